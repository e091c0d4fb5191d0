"""Jobs on cluster storage (issue 22, item 1): URIs are never turned into local paths, outputs are staged and
renamed through the JVM's Hadoop FileSystem, inputs on URIs are read through Spark.

HDFS is not available here, so the Hadoop code path runs on ``file:`` URIs through Hadoop's local file
system (:class:`HadoopStorage` with ``file:``), and the jobs are made to treat ``file:`` URIs as remote:
the same calls an ``hdfs://`` path makes (exists, mkdirs, rename, copyFromLocalFile, binaryFile reads).
"""

import json

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from sparknmf.pipeline import inputs as inputs_module
from sparknmf.pipeline import jobrun
from sparknmf.pipeline.staging import StagedDirectory
from sparknmf.pipeline.storage import HadoopStorage, LocalStorage, StorageError, join, local_path, scheme

pytestmark = pytest.mark.spark


def test_uris_are_never_turned_into_local_paths(tmp_path):
    assert scheme("hdfs:///user/me/out") == "hdfs" and scheme("out/x") == "" and scheme("C:\\data") == ""
    assert local_path("file:///tmp/x") == local_path("file:/tmp/x") == local_path("file://localhost/tmp/x")
    with pytest.raises(StorageError, match=r"'hdfs:///user/me/out' is a hdfs: URI, not a path on the driver"):
        local_path("hdfs:///user/me/out")
    with pytest.raises(StorageError, match=r"'hdfs:///user/me/out': a hdfs: URI is reached through Spark"):
        StagedDirectory("hdfs:///user/me/out")  # was a local folder named hdfs:/user/me/out
    assert join("hdfs://nn:8020/user/", "me", "out") == "hdfs://nn:8020/user/me/out"


def test_object_store_outputs_are_refused_naming_what_is_supported(spark):
    with pytest.raises(StorageError, match=r"'s3a://bucket/out': s3a: cannot rename a folder in one step .* "
                                           r"local or mounted paths, file:, hdfs:, viewfs: URIs"):
        StagedDirectory("s3a://bucket/out", storage=HadoopStorage(spark, "s3a://bucket/out"))


def test_staged_directory_through_hadoop_filesystem(spark, tmp_path):
    root = tmp_path.as_uri()  # file:///..., through Hadoop's local FileSystem
    storage = HadoopStorage(spark, root)
    out = StagedDirectory(join(root, "out"), storage=storage)
    assert out.path == join(root, "out") and out.problem() is None
    stage = out.open()
    assert not stage.is_relative_to(tmp_path)  # the driver's files go to a local scratch folder
    (stage / "measures.json").write_text('{"a": 1}')
    (stage / "report").mkdir()
    (stage / "report" / "index.html").write_text("<html>")
    spark.range(3).write.parquet(out.uri("table"))  # Spark writes into the staging folder itself
    spark.range(2).write.parquet(out.uri("report", "data"))  # a folder the driver writes into too
    assert not (tmp_path / "out").exists()
    assert out.commit() == join(root, "out")
    assert json.loads((tmp_path / "out" / "measures.json").read_text()) == {"a": 1}
    assert (tmp_path / "out" / "report" / "index.html").read_text() == "<html>"
    assert spark.read.parquet(str(tmp_path / "out" / "report" / "data")).count() == 2  # merged, not nested
    assert spark.read.parquet(str(tmp_path / "out" / "table")).count() == 3
    assert not stage.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # an existing output: refused, or replaced only once the new one is complete; a failed run leaves it
    assert "exists already" in StagedDirectory(join(root, "out"), storage=storage).problem()
    again = StagedDirectory(join(root, "out"), overwrite=True, storage=storage)
    assert again.problem() is None
    (again.open() / "measures.json").write_text('{"a": 2}')
    again.discard()
    assert json.loads((tmp_path / "out" / "measures.json").read_text()) == {"a": 1}
    again = StagedDirectory(join(root, "out"), overwrite=True, storage=storage)
    (again.open() / "measures.json").write_text('{"a": 2}')
    again.commit()
    assert json.loads((tmp_path / "out" / "measures.json").read_text()) == {"a": 2}
    assert not (tmp_path / "out" / "table").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".crc")) == ["out"]
    # an output renamed aside by a crash is put back
    (tmp_path / "out").rename(tmp_path / ".out.previous-abc")
    assert "exists already" in StagedDirectory(join(root, "out"), storage=storage).problem()
    assert (tmp_path / "out" / "measures.json").exists()


def test_hadoop_storage_file_operations(spark, tmp_path):
    s = HadoopStorage(spark, tmp_path.as_uri())
    path = join(tmp_path.as_uri(), "a", "b.bin")
    s.write_bytes(path, b"\x00\x01binary\xff")
    assert s.read_bytes(path) == b"\x00\x01binary\xff" and s.is_file(path) and s.is_dir(join(tmp_path.as_uri(), "a"))
    assert s.list(join(tmp_path.as_uri(), "a")) == [name for name in s.list(join(tmp_path.as_uri(), "a"))]
    s.rename(path, join(tmp_path.as_uri(), "a", "c.bin"))
    with pytest.raises(FileExistsError):
        s.rename(join(tmp_path.as_uri(), "a", "c.bin"), tmp_path.as_uri())
    assert not s.exists(path) and s.exists(join(tmp_path.as_uri(), "a", "c.bin"))
    s.delete(join(tmp_path.as_uri(), "a"))
    assert not (tmp_path / "a").exists()


@pytest.fixture
def as_remote(spark, monkeypatch):
    """The jobs treat ``file:`` URIs as remote: Hadoop storage for them, inputs read through Spark."""
    def storage_for(path, session=None):
        if scheme(path) == "":
            return LocalStorage()
        return HadoopStorage(session() if callable(session) else session, str(path))

    def is_local(path):
        return scheme(path) == ""

    monkeypatch.setattr(jobrun, "storage_for", storage_for)
    monkeypatch.setattr(inputs_module, "is_local", is_local)
    return spark


def _planted(tmp_path):
    from sparknmf.datasets import block_diagonal

    V, labels = block_diagonal((4, 4), features=10, seed=2)
    scipy.io.mmwrite(str(tmp_path / "v.mtx"), sp.coo_matrix(V))
    (tmp_path / "labels.txt").write_text("\n".join(f"c{c}" for c in labels))
    return V


def test_factorize_with_input_and_output_on_uris(as_remote, tmp_path, monkeypatch):
    import jobs.factorize as job
    from sparknmf import MultiStartNMFModel

    V = _planted(tmp_path)
    fetched = []
    real_fetch = inputs_module.fetch

    def fetch(spark, path):
        fetched.append(str(path))
        return real_fetch(spark, path)

    monkeypatch.setattr(inputs_module, "fetch", fetch)
    out = join(tmp_path.as_uri(), "results", "out")
    conf = tmp_path / "f.toml"
    conf.write_text(f'[input]\npath = "{(tmp_path / "v.mtx").as_uri()}"\nformat = "matrix_market"\n'
                    f'labels = "{(tmp_path / "labels.txt").as_uri()}"\n[nmf]\nk = 2\nseed = 1\n'
                    f'[multistart]\nnrun = 2\nrun_mode = "local"\n[output]\npath = "{out}"\nreport = false\n')
    assert job.main([str(conf)]) == 0
    assert fetched == [(tmp_path / "labels.txt").as_uri(), (tmp_path / "v.mtx").as_uri()]  # read through Spark
    summary = json.loads((tmp_path / "results" / "out" / "summary.json").read_text())
    assert summary["status"] == "done" and summary["output"] == out
    measures = json.loads((tmp_path / "results" / "out" / "measures.json").read_text())
    assert measures["shape"] == list(V.shape) and measures["purity"] == 1.0
    assert MultiStartNMFModel.load(out).assignments.shape == (2, 8)
    assert not [p for p in (tmp_path / "results").iterdir() if p.name.startswith(".out.")]
    # a missing input on a URI is found before any work, through the Hadoop file system
    missing = (tmp_path / "nope.mtx").as_uri()
    assert job.main([str(conf), "--set", f"input.path={missing}", "--set", f"output.path={out}2"]) == 2


def test_bad_storage_settings_exit_2_naming_the_key(spark, tmp_path, capsys):
    import jobs.factorize as job
    import jobs.recommend as refresh

    _planted(tmp_path)
    conf = tmp_path / "f.toml"
    conf.write_text(f'[input]\npath = "{tmp_path / "v.mtx"}"\n[nmf]\nk = 2\n[output]\npath = "{tmp_path / "o"}"\n'
                    'report = false\n')
    assert job.main([str(conf), "--set", "output.path=s3a://bucket/out"]) == 2
    assert "--set output.path=s3a://bucket/out: output.path = 's3a://bucket/out': s3a: cannot rename a folder in " \
           "one step" in capsys.readouterr().err
    assert job.main([str(conf), "--set", "spark.checkpoint_dir=hdfs:///ckpt"]) == 2
    assert "spark.checkpoint_dir = 'hdfs:///ckpt': loop checkpoints are files the driver writes" in \
        capsys.readouterr().err
    ratings = tmp_path / "r.csv"
    ratings.write_text("1,1,5\n")
    rconf = tmp_path / "r.toml"
    rconf.write_text(f'[input]\npath = "{ratings}"\nfile_format = "csv"\n[publish]\nroot = "hdfs:///pub"\n')
    assert refresh.main([str(rconf), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{rconf}: publish.root = 'hdfs:///pub': the folder publisher keeps CURRENT" in err
    assert "supported: a local path, a shared POSIX mount (NFS, ...) or a file: URI" in err


def test_relative_output_is_refused_in_cluster_deploy_mode(tmp_path, monkeypatch):
    class Conf:
        def get(self, key, default=None):
            return {"spark.submit.deployMode": "cluster"}.get(key, default)

    class Session:
        conf = Conf()

    job = jobrun.Job("factorize", None, None)
    monkeypatch.setattr(job, "spark", lambda: Session())
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "1")
    assert "a relative path in cluster deploy mode is a folder in the driver's container" in \
        job.driver_path_problem("out/ap")
    assert job.driver_path_problem("/mnt/shared/out") is None and job.driver_path_problem("hdfs:///out") is None
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT")
    assert job.driver_path_problem("out/ap") is None  # python jobs/...: client mode


def test_topics_reads_input_and_vocabulary_through_spark(as_remote, tmp_path, monkeypatch):
    import jobs.topics as job

    rng = np.random.default_rng(0)
    V = np.zeros((6, 4))
    V[:3, :2] = rng.integers(1, 5, (3, 2))
    V[3:, 2:] = rng.integers(1, 5, (3, 2))
    scipy.io.mmwrite(str(tmp_path / "v.mtx"), sp.coo_matrix(V))
    (tmp_path / "terms.txt").write_text("".join(f"term{i}\n" for i in range(1, 7)))
    opened = []
    real = inputs_module.local_path
    monkeypatch.setattr(inputs_module, "local_path", lambda p: opened.append(str(p)) or real(p))
    out = join(tmp_path.as_uri(), "topics")
    conf = tmp_path / "t.toml"
    conf.write_text(f'[input]\npath = "{(tmp_path / "v.mtx").as_uri()}"\n[vocabulary]\n'
                    f'path = "{(tmp_path / "terms.txt").as_uri()}"\n[nmf]\nk = 2\ninit = "nndsvd"\n'
                    f'[output]\npath = "{out}"\ntop_terms = 2\nreport = false\n')
    assert job.main([str(conf)]) == 0
    assert not [p for p in opened if p.startswith("file:")]  # the URIs were never opened as local paths
    top = json.loads((tmp_path / "topics" / "top_terms.json").read_text())
    assert {row["term"] for row in top} <= {f"term{i}" for i in range(1, 7)} and len(top) == 4
    assert spark_rows(as_remote, join(out, "document_topics")) == 4


def spark_rows(spark, uri):
    return spark.read.parquet(uri).count()


def test_input_fingerprint_on_uris_comes_from_the_file_systems_checksums(spark, tmp_path):
    from sparknmf.pipeline.inputs import content_digest
    from sparknmf.pipeline.storage import Storage

    class Checksummed(Storage):  # what HDFS answers: a checksum per file below the path
        def __init__(self, sums):
            self.sums = sums

        def checksums(self, path):
            return self.sums

    same = content_digest("hdfs:///r", storage=lambda p: Checksummed([("a", b"MD5-1"), ("b", b"MD5-2")]))
    assert same == content_digest("hdfs:///r", storage=lambda p: Checksummed([("a", b"MD5-1"), ("b", b"MD5-2")]))
    assert same != content_digest("hdfs:///r", storage=lambda p: Checksummed([("a", b"MD5-1"), ("b", b"MD5-3")]))
    assert content_digest("hdfs:///r") is None  # no storage: every run trains
    assert content_digest("hdfs:///r", storage=lambda p: Checksummed(None)) is None  # no checksums kept
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "part-0").write_bytes(b"1,1,5\n")
    hadoop = HadoopStorage(spark, tmp_path.as_uri())
    sums = hadoop.checksums((tmp_path / "r").as_uri())  # Hadoop's local file system keeps none
    assert sums is None or [name for name, _ in sums] == ["part-0"]


def test_a_job_leaves_the_log_level_of_an_active_session_alone(spark, tmp_path):
    import jobs.factorize as job

    def level():
        return str(spark.sparkContext._jvm.org.apache.logging.log4j.LogManager.getRootLogger().getLevel())

    before = level()
    _planted(tmp_path)
    conf = tmp_path / "f.toml"
    conf.write_text(f'[input]\npath = "{tmp_path / "v.mtx"}"\n[nmf]\nk = 2\n[output]\npath = "s3a://b/o"\n')
    assert job.main([str(conf), "--log-level", "debug"]) == 2  # used the session (s3a's storage), then refused
    assert level() == before
