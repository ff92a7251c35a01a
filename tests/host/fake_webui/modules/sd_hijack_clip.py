import torch


class FrozenCLIPEmbedderWithCustomWords(torch.nn.Module):
    def __init__(self, wrapped, hijack):
        super().__init__()
        self.wrapped = wrapped
        self.hijack = hijack

    def forward(self, texts):
        return self.wrapped(list(texts))


class FrozenCLIPEmbedderForSDXLWithCustomWords(FrozenCLIPEmbedderWithCustomWords):
    """The host's wrapper of SDXL's CLIP-L embedder (its outputs as the embedder gives them)."""
