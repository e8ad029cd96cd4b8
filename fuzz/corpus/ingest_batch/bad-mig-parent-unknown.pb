
ip-10-0-0-1boot-1"g
prodip-10-0-0-1g5.12xlarge *	us-east-12
us-east-1a:,
MIG-xNVIDIA A10G€€€€`"GPU-nope*1g.5gb(€Ôˆ­±Î¸ı0€€ĞéÎ¸ıR0.1.0X€”ëÜ