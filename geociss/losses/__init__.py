"""Loss terms: pure functions and ``nn.Module``s, device-agnostic, no ``torch.distributed`` calls.

Every term documents its reduction (papers differ here): "valid" divides by the number of
non-ignored pixels, "all" by every pixel of the batch including ignored ones (MiB/PLOP/UCD).
"""
