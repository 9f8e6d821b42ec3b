"""The engine: all compute and file handling. Plain Python + torch; never imports Qt."""
