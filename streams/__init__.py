"""Stream processing: the Faust worker and its pure batch logic."""
