"""Pure numpy/scipy kernels, no Spark: one block in, one block out.

NNLS (block principal pivoting, batched active set), the NMF update rules, objectives, masked and weighted
row equations, masked-ALS row kernels, implicit-feedback ALS row solves, seeding and top-N.  Each kernel is
also the local backend and the test oracle of the Spark path.  The lowest layer: imports nothing else of
sparknmf.
"""
