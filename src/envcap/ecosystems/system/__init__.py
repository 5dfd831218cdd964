"""The system ecosystem."""
