"""The Spark jobs a block of test code starts: bad input must be refused before any of them."""

import contextlib
import uuid


@contextlib.contextmanager
def spark_jobs(spark):
    """Collects the descriptions of the Spark jobs started inside the block (its own job group)."""
    sc = spark.sparkContext
    group = f"checks-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "sparknmf input checks")
    descriptions = []
    try:
        yield descriptions
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        store = sc._jsc.sc().statusStore()
        for job in sc.statusTracker().getJobIdsForGroup(group):
            description = store.job(job).description()
            descriptions.append(description.get() if description.isDefined() else "")
