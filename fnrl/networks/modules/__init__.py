"""adept's network modules: multi-head attention and the relational memory core.

Pure ``flax.linen`` modules with PyTorch-default initialization and parameter names that match
adept's ``torch.nn`` modules (so ``fnrl.networks.torch_interop`` converts them one to one).
"""

from fnrl.networks.modules.attention import MultiHeadSelfAttention, RelationalMHDPA
from fnrl.networks.modules.memory import RMCCell, initial_memory

__all__ = ["MultiHeadSelfAttention", "RMCCell", "RelationalMHDPA", "initial_memory"]
