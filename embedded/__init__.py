"""The embedded stack: Tansu broker process, warehouse read endpoint, lifecycle."""
