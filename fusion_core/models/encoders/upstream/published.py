"""The published configurations of the backbones upstream names, as small dicts.

Used when the user gives no `--backbone-dir`: the architecture is then the published
configuration of the named model whose tensor shapes match the checkpoint's, and the
report says "published configuration matched on shapes". Nothing is downloaded; these
dicts are what the models' `config.json` files on the hub say (only the fields that
change the architecture; the rest are the `transformers` defaults).
"""

from __future__ import annotations

# What every published DINOv3 ViT shares (patch 16 at 224 px, 4 register tokens, RoPE).
_DINOV3_COMMON = dict(num_register_tokens=4, patch_size=16, image_size=224, layer_norm_eps=1e-5, rope_theta=100.0,
                      layerscale_value=1.0, query_bias=True, key_bias=False, value_bias=True, proj_bias=True,
                      mlp_bias=True, pos_embed_rescale=2.0)

# model_type → candidates (name, config fields). Upstream's defaults first.
PUBLISHED: dict[str, list[tuple[str, dict]]] = {
    "vjepa2": [
        ("facebook/vjepa2-vitl-fpc64-256", dict(
            hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4.0, patch_size=16,
            tubelet_size=2, crop_size=256, frames_per_clip=64, in_chans=3, layer_norm_eps=1e-6, qkv_bias=True,
            hidden_act="gelu", pred_hidden_size=384, pred_num_attention_heads=12, pred_num_hidden_layers=12,
            pred_num_mask_tokens=10, pred_zero_init_mask_tokens=True, pred_mlp_ratio=4.0)),
        ("facebook/vjepa2-vith-fpc64-256", dict(
            hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, mlp_ratio=4.0, patch_size=16,
            tubelet_size=2, crop_size=256, frames_per_clip=64, in_chans=3, layer_norm_eps=1e-6, qkv_bias=True,
            hidden_act="gelu", pred_hidden_size=384, pred_num_attention_heads=12, pred_num_hidden_layers=12,
            pred_num_mask_tokens=10, pred_zero_init_mask_tokens=True, pred_mlp_ratio=4.0)),
        ("facebook/vjepa2-vitg-fpc64-256", dict(
            hidden_size=1408, num_hidden_layers=40, num_attention_heads=22, mlp_ratio=48 / 11, patch_size=16,
            tubelet_size=2, crop_size=256, frames_per_clip=64, in_chans=3, layer_norm_eps=1e-6, qkv_bias=True,
            hidden_act="gelu", pred_hidden_size=384, pred_num_attention_heads=12, pred_num_hidden_layers=12,
            pred_num_mask_tokens=10, pred_zero_init_mask_tokens=True, pred_mlp_ratio=4.0)),
    ],
    "dinov3_vit": [
        ("facebook/dinov3-vith16plus-pretrain-lvd1689m", dict(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
            hidden_act="silu", use_gated_mlp=True, **_DINOV3_COMMON)),
        ("facebook/dinov3-vitl16-pretrain-lvd1689m", dict(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
            hidden_act="gelu", use_gated_mlp=False, **_DINOV3_COMMON)),
        ("facebook/dinov3-vitb16-pretrain-lvd1689m", dict(
            hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            hidden_act="gelu", use_gated_mlp=False, **_DINOV3_COMMON)),
        ("facebook/dinov3-vits16-pretrain-lvd1689m", dict(
            hidden_size=384, intermediate_size=1536, num_hidden_layers=12, num_attention_heads=6,
            hidden_act="gelu", use_gated_mlp=False, **_DINOV3_COMMON)),
    ],
    "dinov2": [
        ("facebook/dinov2-base", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4,
                                      patch_size=14, image_size=518, layer_norm_eps=1e-6, layerscale_value=1.0,
                                      qkv_bias=True, hidden_act="gelu", use_swiglu_ffn=False)),
        ("facebook/dinov2-small", dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4,
                                       patch_size=14, image_size=518, layer_norm_eps=1e-6, layerscale_value=1.0,
                                       qkv_bias=True, hidden_act="gelu", use_swiglu_ffn=False)),
        ("facebook/dinov2-large", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4,
                                       patch_size=14, image_size=518, layer_norm_eps=1e-6, layerscale_value=1.0,
                                       qkv_bias=True, hidden_act="gelu", use_swiglu_ffn=False)),
        ("facebook/dinov2-giant", dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, mlp_ratio=4,
                                       patch_size=14, image_size=518, layer_norm_eps=1e-6, layerscale_value=1.0,
                                       qkv_bias=True, hidden_act="gelu", use_swiglu_ffn=True)),
    ],
    "audio-spectrogram-transformer": [
        (f"MIT/ast-finetuned-audioset-{s}-{s}-{acc}", dict(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, patch_size=16,
            frequency_stride=s, time_stride=s, max_length=1024, num_mel_bins=128, layer_norm_eps=1e-12,
            qkv_bias=True, hidden_act="gelu"))
        for s, acc in ((14, "0.443"), (10, "0.4593"), (12, "0.447"), (16, "0.442"))
    ] + [("MIT/ast-finetuned-speech-commands-v2", dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, patch_size=16,
        frequency_stride=10, time_stride=10, max_length=128, num_mel_bins=128, layer_norm_eps=1e-12,
        qkv_bias=True, hidden_act="gelu"))],
}
