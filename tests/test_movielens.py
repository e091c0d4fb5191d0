"""MovieLens 100K loaders and a fit on split u1 (real data under SPARKNMF_DATA)."""

import pytest

from sparknmf import MaskedALS
from sparknmf.datasets import (
    MOVIELENS_SPLITS,
    load_movielens_100k,
    load_movielens_csv,
    load_movielens_items,
    load_movielens_users,
)
from sparknmf.errors import InvalidInputError
from sparknmf.ratings.evaluation import rmse

pytestmark = pytest.mark.data


def test_movielens_100k_files(data_dir):
    folder = data_dir / "ml-100k"
    ratings = load_movielens_100k(folder=folder)
    assert ratings.num_rows == 100_000 and ratings.column_names == ["user", "item", "rating", "timestamp"]
    assert len(set(ratings.column("user").to_pylist())) == 943
    assert sorted(set(ratings.column("rating").to_pylist())) == [1.0, 2.0, 3.0, 4.0, 5.0]
    for split in MOVIELENS_SPLITS:
        train, test = load_movielens_100k(split, folder)
        assert train.num_rows + test.num_rows == 100_000
    items = load_movielens_items(folder)
    assert items.num_rows == 1682
    row = items.to_pylist()[542]
    assert row["title"] == "Misérables, Les (1995)"
    assert items.to_pylist()[0]["genres"] == ["Animation", "Children's", "Comedy"]
    users = load_movielens_users(folder)
    assert users.num_rows == 943 and users.to_pylist()[0] == {
        "user": 1, "age": 24, "gender": "M", "occupation": "technician", "zip_code": "85711"}
    with pytest.raises(ValueError, match="split must be None or one of"):
        load_movielens_100k("u9", folder)


def test_movielens_csv_and_malformed_files(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,4.5,964982703\n2,10,3.0,964982224\n")
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n10,"GoldenEye (1995)",Action|Adventure|Thriller\n')
    ratings, movies = load_movielens_csv(tmp_path)
    assert ratings.column("rating").to_pylist() == [4.5, 3.0]
    assert movies.to_pylist() == [{"item": 10, "title": "GoldenEye (1995)",
                                   "genres": ["Action", "Adventure", "Thriller"]}]
    bad = tmp_path / "ml"
    bad.mkdir()
    (bad / "u.data").write_text("1\t2\t3\n")
    with pytest.raises(InvalidInputError, match="line 1 has 3 fields, expected 4"):
        load_movielens_100k(folder=bad)


@pytest.mark.spark
@pytest.mark.filterwarnings("ignore::sparknmf.ConvergenceWarning")
def test_default_fit_on_u1(spark, data_dir):
    train, test = load_movielens_100k("u1", data_dir / "ml-100k")
    model = MaskedALS(coldStartStrategy="biases", ratingRange=[1.0, 5.0]).fit(spark.createDataFrame(train))
    assert rmse(model.transform(spark.createDataFrame(test))) < 0.925  # MLlib ALS: 0.93 on u1
