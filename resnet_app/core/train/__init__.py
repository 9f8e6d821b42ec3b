"""Training a model: the settings table, the loop, the quick head trainer, run data and files, events, distributed/.
May import core.data, core.model and core.use (a finished run is calibrated through the Classifier).
"""
