"""Score many images with Spark: the MLflow pyfunc model as a Spark UDF (mlflow.pyfunc.spark_udf).

    python examples/spark_score.py MODEL_URI [--data-dir DIR] [--n 2000]

MODEL_URI is any MLflow model URI of a trained detector (models:/NAME/1, runs:/RUN_ID/detector); set
MLFLOW_TRACKING_URI when it is not the local sqlite mlflow.db. Here Spark runs in-process (local[2]); on a
cluster, install anomalyvae (and its pinned requirements) on the executors and submit this script with
spark-submit: the UDF ships the model files to every executor and calls the same predict as
`mlflow models serve`. Input: one array<int> column of image_size * image_size pixels (0..255) per row;
output: a struct of the scores and is_anomaly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_uri")
    ap.add_argument("--data-dir", default=os.environ.get("ANOMALYVAE_DATA_DIR", "data"),
                    help="folder with MNIST's t10k-*-ubyte.gz files (the images to score)")
    ap.add_argument("--n", type=int, default=2000, help="how many test images to score")
    args = ap.parse_args(argv)

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors use this venv, with anomalyvae in it
    import mlflow.pyfunc
    import pandas as pd
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from anomalyvae.data.datasets import load_test

    test = load_test("mnist", Path(args.data_dir), 28)
    pixels = test.images[: args.n].reshape(min(args.n, len(test.images)), -1).numpy()
    frame = pd.DataFrame({"id": range(len(pixels)), "label": test.labels[: len(pixels)].numpy(),
                          "pixels": [row.astype(int).tolist() for row in pixels]})

    spark = (SparkSession.builder.master("local[2]").appName("anomalyvae-score")
             .config("spark.ui.enabled", "false").config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .getOrCreate())
    try:
        t0 = time.perf_counter()
        detect = mlflow.pyfunc.spark_udf(spark, args.model_uri, env_manager="local")  # struct<scores, is_anomaly>
        scored = spark.createDataFrame(frame).withColumn("pred", detect("pixels"))
        scored = scored.select("id", "label", "pred.*").cache()  # scored once, read twice below
        per_label = scored.groupBy("label").agg(F.count("*").alias("n"), F.avg("elbo").alias("mean_elbo"),
                                                F.avg(F.col("is_anomaly").cast("double")).alias("flagged"))
        per_label.orderBy("label").show()
        n, flagged = scored.count(), scored.filter("is_anomaly").count()
        print(f"scored {n} images with Spark in {time.perf_counter() - t0:.1f}s: {flagged} flagged as anomalies")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
