"""The engine: all compute and file handling. Plain Python + torch; never imports Qt.

Four packages, by what each part is for: data, model, train, use (docs/architecture.md); imports only go down.
"""
