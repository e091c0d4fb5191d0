"""The job pipeline: TOML job configuration, the job runner, inputs, staged outputs, versioned publications
with their lock, and the bundle for spark-submit.  Above everything but :mod:`sparknmf` itself; jobs/ call it.
"""
