"""Self-supervised adaptation of the detector's ViT backbone on unlabeled frames (DINO, plain torch).

`lightly` implements the same losses but pulls in torchvision, whose only build here is CUDA and
replaces the CPU torch (`pip install --dry-run lightly -c constraints.txt` wants torchvision 0.28,
pytorch-lightning and hydra), so the few pieces DINO needs live here: multi-crop views
(`views`), the projection head (`head`), the centred and sharpened cross-entropy (`loss`) and the
student/EMA-teacher loop (`adapt`).
"""
