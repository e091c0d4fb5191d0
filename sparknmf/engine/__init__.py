"""The Spark engine: sessions, V as a grid of blocks, ingest and input checks, block payloads and block
functions as data (no pickle), resident tasks and their socket, the one-block local backend, checkpoints and
model files.  Above :mod:`sparknmf.kernels`; knows nothing of a particular algorithm.
"""
