"""Workload layer graphs with exact shapes (LLMs, encoders, CNNs, MLPs) and YAML workload specs."""

from sparsa.models.workloads.graph import GemmLayer, VectorOp, Workload
from sparsa.models.workloads.spec import WORKLOADS, get_workload, load_workload

__all__ = ["GemmLayer", "VectorOp", "Workload", "WORKLOADS", "get_workload", "load_workload"]
