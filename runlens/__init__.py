"""The runlens command line and settings."""
