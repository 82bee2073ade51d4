"""The `paft` command: the stages of paft_core and the Prefect flows, deployments and servers above them."""
