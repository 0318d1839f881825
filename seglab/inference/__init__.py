"""Using a trained model: predictions written to files and deployment.

Holds ONNX / TorchScript export with its checks (``export``) and the NIfTI writer that puts CT
predictions back on the scan's grid (``volume_writer``). Test-time augmentation and sliding-window
inference are model-level functions in :mod:`seglab.models.inference`, re-exported here, because
tasks use them during validation. May import data, models, metrics, tasks and runs; never the CLI.
"""

from seglab.models.inference import infer

__all__ = ["infer"]
