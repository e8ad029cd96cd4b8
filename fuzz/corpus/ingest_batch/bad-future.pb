
ip-10-0-0-1boot-1"¯
prodip-10-0-0-1g5.12xlarge *	us-east-12
us-east-1a:
GPU-0NVIDIA A10G€€€€`:
GPU-1NVIDIA A10G€€€€`0:
GPU-2NVIDIA A10G€€€€`0:
GPU-3NVIDIA A10G€€€€`0(€À²£Ì·¹ý0€ìù“„¸¹ýR0.1.0X€”ëÜ