# numpy's random stream, reproduced bit for bit in GDScript: Generator(PCG64(SeedSequence(seed)))
# and its next_double (what Gymnasium's np_random.uniform draws from).
# GDScript ints are 64-bit signed: the 128-bit state is 8 limbs of 16 bits (every product of two
# limbs fits), and SeedSequence's 32-bit products are split so that none overflows.
extends Reference

const MULT := [0xf645, 0x9fcc, 0xdf64, 0x4385, 0x5da4, 0x1fc6, 0xed05, 0x2360]  # PCG_DEFAULT_MULTIPLIER_128
const M32 := 0xffffffff

var state := [0, 0, 0, 0, 0, 0, 0, 0]
var inc := [0, 0, 0, 0, 0, 0, 0, 0]


static func _mul128(a: Array, b: Array) -> Array:
	var r := [0, 0, 0, 0, 0, 0, 0, 0]
	var carry := 0
	for k in range(8):
		var s := carry
		for i in range(k + 1):
			s += a[i] * b[k - i]
		r[k] = s & 0xffff
		carry = s >> 16
	return r


static func _add128(a: Array, b: Array) -> Array:
	var r := [0, 0, 0, 0, 0, 0, 0, 0]
	var carry := 0
	for k in range(8):
		var s: int = a[k] + b[k] + carry
		r[k] = s & 0xffff
		carry = s >> 16
	return r


func _step() -> void:
	state = _add128(_mul128(state, MULT), inc)


static func _mul32(a: int, b: int) -> int:  # (a * b) mod 2^32 for a, b < 2^32
	return ((a & 0xffff) * b + ((((a >> 16) * b) & 0xffff) << 16)) & M32


static func _hashmix(v: int, h: Array) -> int:
	v ^= h[0]
	h[0] = _mul32(h[0], 0x931e8875)
	v = _mul32(v, h[0])
	v ^= v >> 16
	return v


static func _mix(x: int, y: int) -> int:
	var r := (_mul32(0xca01f9dd, x) - _mul32(0x4973f715, y)) & M32
	return r ^ (r >> 16)


# PCG64(SeedSequence(seed)) for 0 <= seed < 2^64; `seed_bits` holds the seed's 64 bits (a seed
# >= 2^63 arrives as Rlay.U64, whose bits are a negative int).
func seed(seed_bits: int) -> void:
	var lo := seed_bits & M32
	var hi := (seed_bits >> 32) & M32
	var entropy := [lo, hi]
	var n := 2 if hi != 0 else 1
	var h := [0x43b0d7e5]
	var pool := [0, 0, 0, 0]
	for i in range(4):
		pool[i] = _hashmix(entropy[i] if i < n else 0, h)
	for i in range(4):
		for j in range(4):
			if i != j:
				pool[j] = _mix(pool[j], _hashmix(pool[i], h))
	var hh := 0x8b51f9dd
	var words := []
	for i in range(8):
		var d: int = pool[i % 4] ^ hh
		hh = _mul32(hh, 0x58f38ded)
		d = _mul32(d, hh)
		d ^= d >> 16
		words.append(d)
	# generate_state(4, uint64): initstate = (w0 | w1 << 32) << 64 | (w2 | w3 << 32), initseq alike.
	var initstate := [words[2] & 0xffff, words[2] >> 16, words[3] & 0xffff, words[3] >> 16,
		words[0] & 0xffff, words[0] >> 16, words[1] & 0xffff, words[1] >> 16]
	var initseq := [words[6] & 0xffff, words[6] >> 16, words[7] & 0xffff, words[7] >> 16,
		words[4] & 0xffff, words[4] >> 16, words[5] & 0xffff, words[5] >> 16]
	# inc = initseq << 1 | 1
	var carry := 1
	for k in range(8):
		var s: int = (initseq[k] << 1) | carry
		inc[k] = s & 0xffff
		carry = s >> 16
	state = [0, 0, 0, 0, 0, 0, 0, 0]
	_step()
	state = _add128(state, initstate)
	_step()


# The next uint64 as [hi32, lo32] (XSL-RR output of the advanced state).
func next_u64() -> Array:
	_step()
	var hi: int = state[4] | (state[5] << 16) | (state[6] << 32) | (state[7] << 48)  # may be negative: same bits
	var lo: int = state[0] | (state[1] << 16) | (state[2] << 32) | (state[3] << 48)
	var v := hi ^ lo
	var rot: int = (state[7] >> 10) & 63
	var vh := (v >> 32) & M32
	var vl := v & M32
	# rotate right the 64-bit value (vh:vl) by rot, on 32-bit halves
	if rot >= 32:
		var t := vh
		vh = vl
		vl = t
		rot -= 32
	if rot > 0:
		var nh := ((vh >> rot) | (vl << (32 - rot))) & M32
		var nl := ((vl >> rot) | (vh << (32 - rot))) & M32
		vh = nh
		vl = nl
	return [vh, vl]


# numpy's next_double: (next_uint64 >> 11) * 2^-53.
func next_double() -> float:
	var u := next_u64()
	var x: int = (u[0] << 21) | (u[1] >> 11)  # the top 53 bits
	return x * (1.0 / 9007199254740992.0)  # not float(x): Godot 3.2 float(int) rounds to float32
