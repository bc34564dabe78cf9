"""Built-in network zoo (JSON files in the wavecore-network/1 format)."""
