"""Encoders: LexLIP sparse (torch), the dense twin (torch), and the text side through ONNX Runtime (no torch).

Import the submodules directly; this package imports nothing heavy.
"""
