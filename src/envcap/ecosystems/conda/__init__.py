"""The conda ecosystem."""
