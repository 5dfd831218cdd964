"""The python ecosystem."""
