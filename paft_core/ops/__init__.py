"""What the stages run beside them: MLflow tracking (tracking.py, the only module importing mlflow), its
helper process (tracking_helper.py), and the Prefect and MLflow servers a command starts or checks
(servers.py)."""
