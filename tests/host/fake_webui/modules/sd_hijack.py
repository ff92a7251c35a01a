import torch


class ModelHijack:
    pass


model_hijack = ModelHijack()


class EmbeddingsWithFixes(torch.nn.Module):
    """The host's wrapper around the token embedding (textual-inversion hooks live here)."""

    def __init__(self, wrapped, embeddings, textual_inversion_key="clip_l"):
        super().__init__()
        self.wrapped = wrapped
        self.embeddings = embeddings

    def forward(self, input_ids):
        return self.wrapped(input_ids)
