"""A trained model at work: classifier, ONNX model, calibration, explanations, evaluation, export, sorting.
May import core.data and core.model; never core.train.
"""
