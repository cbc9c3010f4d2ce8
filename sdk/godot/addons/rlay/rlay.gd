# rlay protocol v1 in pure GDScript (Godot 3.2+): framing, the MessagePack subset, tensors,
# messages, the state machine and space descriptors. Sans-I/O: bytes in, messages out; messages
# in, bytes out. The Node that owns a socket is rlay_env.gd; this file knows nothing of sockets.
#
# Use it with preload (class_name needs the editor's class cache, which a headless export or a
# `-s` script may not have):
#     const Rlay = preload("res://addons/rlay/rlay.gd")
#
# Values (spec §3) map to Godot types: nil -> null, bool, int (64-bit signed), float (64-bit),
# str -> String, bytes -> PoolByteArray, array -> Array, map -> Dictionary (insertion order is
# the wire order; keys must be String), tensor -> Rlay.Tensor. A uint64 >= 2^63 does not fit a
# GDScript int: it decodes to Rlay.U64 (its 64 bits in a signed int) and encodes back to the same
# `cf` bytes. PoolRealArray and PoolIntArray are accepted when encoding, as float32 / int32 1-d
# tensors (that is what they hold in Godot 3).
#
# GDScript has no exceptions: the decoder and the connection keep a sticky error (the first one
# wins, later calls are no-ops), read with `err` / `err_msg` after a call.
extends Reference

const PROTOCOL := "rlay"
const VERSION := 1
const SDK_NAME := "rlay-godot"
const SDK_VERSION := "0.1.0"
const DEFAULT_MAX_FRAME_SIZE := 67108864
const MAX_DEPTH := 64
const MAX_NDIM := 32
# §13: the first frame a side receives (the peer's HELLO, or a fatal ERROR) is at most 64 KiB,
# and a body may declare at most 262 144 values (a tensor counts 8), both FRAME_TOO_LARGE.
const DEFAULT_MAX_HANDSHAKE_FRAME_SIZE := 65536
const DEFAULT_MAX_VALUES := 262144
const TENSOR_VALUES := 8

# §6 message kinds (append-only).
const HELLO := 1
const ENV_INFO := 2
const RESET := 16
const STEP := 17
const RENDER := 18
const CLOSE := 19
const CALL := 20
const RESET_RESULT := 32
const STEP_RESULT := 33
const RENDER_RESULT := 34
const CLOSE_RESULT := 35
const CALL_RESULT := 36
const ERROR := 48

# §11 error codes.
const BAD_MAGIC := 1
const BAD_HEADER := 2
const FRAME_TOO_LARGE := 3
const TRUNCATED := 4
const MALFORMED := 5
const UNKNOWN_KIND := 6
const BAD_FIELD := 7
const BAD_TENSOR := 8
const UNKNOWN_DTYPE := 9
const TOO_DEEP := 10
const UNEXPECTED_MESSAGE := 11
const VERSION_MISMATCH := 12
const ROLE_CONFLICT := 13
const BAD_SPACE := 14
const BAD_VALUE := 15
const ENV_EXCEPTION := 32
const INVALID_ACTION := 33
const NOT_SUPPORTED := 34
const RESET_NEEDED := 35
const SHUTTING_DOWN := 36
const INTERNAL := 37

const ERROR_NAMES := {
	1: "BAD_MAGIC", 2: "BAD_HEADER", 3: "FRAME_TOO_LARGE", 4: "TRUNCATED", 5: "MALFORMED",
	6: "UNKNOWN_KIND", 7: "BAD_FIELD", 8: "BAD_TENSOR", 9: "UNKNOWN_DTYPE", 10: "TOO_DEEP",
	11: "UNEXPECTED_MESSAGE", 12: "VERSION_MISMATCH", 13: "ROLE_CONFLICT", 14: "BAD_SPACE",
	15: "BAD_VALUE", 32: "ENV_EXCEPTION", 33: "INVALID_ACTION", 34: "NOT_SUPPORTED",
	35: "RESET_NEEDED", 36: "SHUTTING_DOWN", 37: "INTERNAL",
}

const KIND_NAMES := {
	1: "HELLO", 2: "ENV_INFO", 16: "RESET", 17: "STEP", 18: "RENDER", 19: "CLOSE", 20: "CALL",
	32: "RESET_RESULT", 33: "STEP_RESULT", 34: "RENDER_RESULT", 35: "CLOSE_RESULT",
	36: "CALL_RESULT", 48: "ERROR",
}

# §6 fields in canonical order, each with its wire type (checked by check_fields).
const FIELDS := {
	1: [["protocol", "str"], ["version", "int"], ["role", "str"], ["sdk", "str"],
		["sdk_version", "str"], ["capabilities", "map"]],
	2: [["observation_space", "map"], ["action_space", "map"], ["num_envs", "int"],
		["metadata", "map"], ["render_mode", "str?"], ["name", "str?"]],
	16: [["seed", "seed"], ["options", "map?"]],
	17: [["action", "any"]],
	18: [],
	19: [],
	20: [["name", "str"], ["args", "array"], ["kwargs", "map"]],
	32: [["obs", "any"], ["info", "map"]],
	33: [["obs", "any"], ["reward", "reward"], ["terminated", "flag"], ["truncated", "flag"],
		["info", "map"]],
	34: [["frame", "any"]],
	35: [],
	36: [["value", "any"]],
	48: [["code", "int"], ["message", "str"], ["fatal", "bool"], ["remote_type", "str?"],
		["traceback", "str?"]],
}

# §6: who sends each kind ("" = both).
const SENDER := {
	1: "", 2: "env", 16: "agent", 17: "agent", 18: "agent", 19: "agent", 20: "agent",
	32: "env", 33: "env", 34: "env", 35: "env", 36: "env", 48: "",
}

# §8 the state machine, one table: state -> {kind: next state}. ERROR is handled apart (its
# `fatal` field decides, see after_error).
const TRANSITIONS := {
	"hello": {1: "describe"},
	"describe": {2: "idle"},
	"idle": {16: "reset", 17: "step", 18: "render", 20: "call", 19: "close"},
	"reset": {32: "idle"},
	"step": {33: "idle"},
	"render": {34: "idle"},
	"call": {36: "idle"},
	"close": {35: "closed"},
	"closed": {},
}

# §4 dtypes: code -> [name, itemsize]. 0 is invalid on purpose.
const DT_BOOL := 1
const DT_INT8 := 2
const DT_INT16 := 3
const DT_INT32 := 4
const DT_INT64 := 5
const DT_UINT8 := 6
const DT_UINT16 := 7
const DT_UINT32 := 8
const DT_UINT64 := 9
const DT_FLOAT16 := 10
const DT_FLOAT32 := 11
const DT_FLOAT64 := 12
const DTYPES := {
	1: ["bool", 1], 2: ["int8", 1], 3: ["int16", 2], 4: ["int32", 4], 5: ["int64", 8],
	6: ["uint8", 1], 7: ["uint16", 2], 8: ["uint32", 4], 9: ["uint64", 8], 10: ["float16", 2],
	11: ["float32", 4], 12: ["float64", 8],
}
const DTYPE_CODES := {
	"bool": 1, "int8": 2, "int16": 3, "int32": 4, "int64": 5, "uint8": 6, "uint16": 7,
	"uint32": 8, "uint64": 9, "float16": 10, "float32": 11, "float64": 12,
}


# A tensor (§4): dtype code, shape (Array of int), raw little-endian C-order bytes.
class Tensor:
	var dtype: int
	var shape: Array
	var data: PoolByteArray

	func _init(p_dtype: int = 0, p_shape: Array = [], p_data: PoolByteArray = PoolByteArray()):
		dtype = p_dtype
		shape = p_shape
		data = p_data

	func size() -> int:
		var n := 1
		for d in shape:
			n *= d
		return n

	func itemsize() -> int:
		return DTYPES[dtype][1]

	func dtype_name() -> String:
		return DTYPES[dtype][0]

	# The elements as a flat Array of int / float / bool (float16 is widened).
	func to_array() -> Array:
		var out := []
		var n := size()
		var s := StreamPeerBuffer.new()
		s.data_array = data
		for i in range(n):
			match dtype:
				1: out.append(data[i] != 0)
				2: out.append(s.get_8())
				3: out.append(s.get_16())
				4: out.append(s.get_32())
				5, 9: out.append(s.get_64())
				6: out.append(s.get_u8())
				7: out.append(s.get_u16())
				8: out.append(s.get_u32())
				10: out.append(W._half_to_float(s.get_u16()))
				11: out.append(s.get_float())
				12: out.append(s.get_double())
		return out

	func _to_string() -> String:
		return "Tensor(%s%s)" % [dtype_name(), str(shape)]


# A uint64 value >= 2^63 (its bits in a signed int), so that it travels back unchanged.
class U64:
	var bits: int

	func _init(p_bits: int = 0):
		bits = p_bits

	func _to_string() -> String:
		return "U64(0x%x)" % bits


# A str holding U+0000: a Godot 3 String ends at its first NUL, so such a str is kept as its
# UTF-8 bytes (and encodes back to the same str). Every other str is a String.
class NulStr:
	var utf8: PoolByteArray

	func _init(p_utf8: PoolByteArray = PoolByteArray()):
		utf8 = p_utf8

	func _to_string() -> String:
		return utf8.get_string_from_utf8()


# One decoded message: its kind and its body (a Dictionary in wire order).
class Message:
	var kind: int
	var body: Dictionary

	func _init(p_kind: int = 0, p_body: Dictionary = {}):
		kind = p_kind
		body = p_body

	func name() -> String:
		return KIND_NAMES.get(kind, "kind %d" % kind)




# Wire helpers, in a class so that the inner classes below can call them (an inner class
# cannot call its outer script's functions in GDScript 3).
class W:
	static func _half_to_float(h: int) -> float:
		var sg := -1.0 if (h & 0x8000) else 1.0
		var e := (h >> 10) & 0x1f
		var m := h & 0x3ff
		if e == 0:
			return sg * m * pow(2, -24)
		if e == 31:
			return sg * INF if m == 0 else NAN
		return sg * (1.0 + m / 1024.0) * pow(2, e - 15)

	# One whole frame (§2) for a message body, or an empty PoolByteArray with `why` set.
	static func encode_frame(kind: int, body: Dictionary, why: Array = []) -> PoolByteArray:
		var e := Encoder.new()
		e.value(body)
		if e.err != "":
			why.append(e.err)
			return PoolByteArray()
		var body_bytes: PoolByteArray = e.out.data_array
		var data_bytes: PoolByteArray = e.data.data_array
		var h := StreamPeerBuffer.new()
		h.put_u8(0x52)
		h.put_u8(0x4c)
		h.put_u8(kind)
		h.put_u8(0)
		h.put_u32(data_bytes.size())
		h.put_u32(body_bytes.size())
		var frame: PoolByteArray = h.data_array
		frame.append_array(data_bytes)
		frame.append_array(body_bytes)
		return frame

	# Why `raw` is not valid UTF-8 (overlong forms, surrogates, > U+10FFFF, truncation), or "".
	static func utf8_problem(raw: PoolByteArray) -> String:
		var i := 0
		var n := raw.size()
		while i < n:
			var c: int = raw[i]
			if c < 0x80:
				i += 1
				continue
			var need := 0
			var cp := 0
			var lo := 0
			if c >= 0xc2 and c <= 0xdf:
				need = 1
				cp = c & 0x1f
				lo = 0x80
			elif c >= 0xe0 and c <= 0xef:
				need = 2
				cp = c & 0x0f
				lo = 0x800
			elif c >= 0xf0 and c <= 0xf4:
				need = 3
				cp = c & 0x07
				lo = 0x10000
			else:
				return "byte 0x%02x at %d cannot start a character" % [c, i]
			if i + need >= n:
				return "truncated character at %d" % i
			for k in range(1, need + 1):
				var cc: int = raw[i + k]
				if cc & 0xc0 != 0x80:
					return "byte 0x%02x at %d is not a continuation byte" % [cc, i + k]
				cp = (cp << 6) | (cc & 0x3f)
			if cp < lo or cp > 0x10ffff or (cp >= 0xd800 and cp <= 0xdfff):
				return "invalid code point U+%X at %d" % [cp, i]
			i += need + 1
		return ""

	static func _type_name(v) -> String:
		match typeof(v):
			TYPE_NIL: return "nil"
			TYPE_BOOL: return "bool"
			TYPE_INT: return "int"
			TYPE_REAL: return "float"
			TYPE_STRING: return "str"
			TYPE_RAW_ARRAY: return "bytes"
			TYPE_ARRAY: return "array"
			TYPE_DICTIONARY: return "map"
			TYPE_OBJECT:
				if v is Tensor:
					return "tensor " + v.dtype_name() + str(v.shape)
				if v is U64:
					return "int"
		return "Godot type %d" % typeof(v)

	static func describe(v) -> String:
		var t := W._type_name(v)
		if typeof(v) in [TYPE_INT, TYPE_REAL, TYPE_BOOL, TYPE_STRING]:
			return "%s %s" % [t, str(v).left(40)]
		return t

	static func is_int(v) -> bool:
		return typeof(v) == TYPE_INT or (typeof(v) == TYPE_OBJECT and v is U64)

	# §6: does `v` have the field type `t`? (see FIELDS)
	static func field_ok(t: String, v) -> bool:
		match t:
			"str": return typeof(v) == TYPE_STRING or (typeof(v) == TYPE_OBJECT and v is NulStr)
			"str?": return v == null or typeof(v) == TYPE_STRING or (typeof(v) == TYPE_OBJECT and v is NulStr)
			"int": return W.is_int(v)
			"bool": return typeof(v) == TYPE_BOOL
			"map": return typeof(v) == TYPE_DICTIONARY
			"map?": return v == null or typeof(v) == TYPE_DICTIONARY
			"array": return typeof(v) == TYPE_ARRAY
			"any": return true
			"reward":
				return typeof(v) == TYPE_REAL or W.is_int(v) or (v is Tensor and v.dtype == DT_FLOAT64 and v.shape.size() == 1)
			"flag":
				return typeof(v) == TYPE_BOOL or (v is Tensor and v.dtype == DT_BOOL and v.shape.size() == 1)
			"seed":
				if v == null or W.is_int(v):
					return true
				if typeof(v) != TYPE_ARRAY:
					return false
				for x in v:
					if not (x == null or W.is_int(x)):
						return false
				return true
		return false

	# Check a decoded body against §6; returns [code, why] or [] when valid. The body is reordered
	# to canonical order in place of the caller's copy (returned in `canon`).
	static func check_fields(kind: int, body, canon: Array) -> Array:
		var name: String = KIND_NAMES[kind]
		if typeof(body) != TYPE_DICTIONARY:
			return [BAD_FIELD, "%s body must be a map, got %s" % [name, W._type_name(body)]]
		var fields: Array = FIELDS[kind]
		var out := {}
		for f in fields:
			if not body.has(f[0]):
				return [BAD_FIELD, "%s: missing field %s" % [name, f[0]]]
		for k in body:
			var known := false
			for f in fields:
				if f[0] == k:
					known = true
			if not known:
				return [BAD_FIELD, "%s: unknown field %s" % [name, str(k).left(40)]]
		for f in fields:
			var v = body[f[0]]
			if not W.field_ok(f[1], v):
				return [BAD_FIELD, "%s.%s must be %s, got %s" % [name, f[0], f[1], W.describe(v)]]
			if f[1] == "reward" and typeof(v) == TYPE_INT:
				v = v * 1.0  # §5: an int is accepted where a float is due, and is that float
			out[f[0]] = v
		if kind == ENV_INFO and out["num_envs"] is int and out["num_envs"] < 1:
			return [BAD_FIELD, "ENV_INFO.num_envs must be >= 1, got %d" % out["num_envs"]]
		if kind == ENV_INFO and (out["num_envs"] is U64 or out["num_envs"] > 0x7fffffff):
			return [BAD_FIELD, "ENV_INFO.num_envs must be at most 2147483647, got %s" % str(out["num_envs"])]
		if kind == ERROR:
			var code = out["code"]
			if not (code is int) or code < 1 or code > 0x7fffffff:
				return [BAD_FIELD, "ERROR.code must be in 1..2147483647, got %s" % str(code)]
		if kind == ENV_INFO:
			# §6: a space field that is a map but not a valid descriptor is BAD_SPACE.
			for f in ["observation_space", "action_space"]:
				var bad := W.check_space(out[f], f)
				if bad.size() > 0:
					return bad
		canon.append(out)
		return []

	# Decode one frame's body as a message of its kind, fields checked (no state machine).
	# Returns a Message, or [code, why].
	static func decode_message(kind: int, data: PoolByteArray, body: PoolByteArray, max_depth: int = MAX_DEPTH):
		var d := Decoder.new(body, data)
		d.max_depth = max_depth
		var v = d.decode_body()
		if d.err != 0:
			return [d.err, d.err_msg]
		var canon := []
		var bad := W.check_fields(kind, v, canon)
		if bad.size() > 0:
			return bad
		return Message.new(kind, canon[0])

	static func message_frame(m: Message, why: Array = []) -> PoolByteArray:
		return W.encode_frame(m.kind, m.body, why)

	# §10: a received message's batched fields against the session's num_envs; "" or why not
	# (BAD_FIELD). RESET's seed is checked here too (an int >= 0; seed + N - 1 within uint64).
	static func check_batch(m: Message, n: int) -> String:
		var b := m.body
		match m.kind:
			STEP_RESULT:
				for f in [["reward", DT_FLOAT64, TYPE_REAL], ["terminated", DT_BOOL, TYPE_BOOL], ["truncated", DT_BOOL, TYPE_BOOL]]:
					var v = b[f[0]]
					if n == 1:
						if typeof(v) != f[2]:
							return "STEP_RESULT.%s of one env must be a %s, got %s" % [f[0], "float" if f[2] == TYPE_REAL else "bool", W.describe(v)]
					elif not (typeof(v) == TYPE_OBJECT and v is Tensor and v.dtype == f[1] and v.shape == [n]):
						return "STEP_RESULT.%s of a batch of %d sub-envs must be a %s tensor of shape (%d,), got %s" % [f[0], n, DTYPES[f[1]][0], n, W.describe(v)]
			CALL_RESULT:
				var value = b["value"]
				if n > 1 and (typeof(value) != TYPE_ARRAY or value.size() != n):
					return "CALL_RESULT.value must be an array of %d values (num_envs is %d), got %s" % [n, n, W.describe(value)]
			RENDER_RESULT:
				var frame = b["frame"]
				if n > 1 and frame != null and (typeof(frame) != TYPE_ARRAY or frame.size() != n):
					return "RENDER_RESULT.frame must be nil or an array of %d frames (num_envs is %d), got %s" % [n, n, W.describe(frame)]
			RESET:
				var sd = b["seed"]
				if typeof(sd) == TYPE_INT:
					if sd < 0:
						return "RESET.seed must be >= 0, got %d" % sd
				elif typeof(sd) == TYPE_OBJECT:  # U64: 2^63 ... 2^64 - 1
					if sd.bits + (n - 1) >= 0:
						return "RESET.seed %s: the seed of sub-env %d (seed + %d) would exceed 2^64 - 1" % [str(sd), n - 1, n - 1]
				elif typeof(sd) == TYPE_ARRAY:
					if n == 1:
						return "RESET.seed is an array, but num_envs is 1"
					if sd.size() != n:
						return "RESET.seed is an array of %d seeds; expected one per sub-env (%d)" % [sd.size(), n]
					for i in range(n):
						if typeof(sd[i]) == TYPE_INT and sd[i] < 0:
							return "RESET.seed[%d] must be >= 0, got %d" % [i, sd[i]]
				var options = b["options"]
				if n > 1 and options != null and options.has("reset_mask"):
					var mask = options["reset_mask"]
					if mask != null and not (typeof(mask) == TYPE_OBJECT and mask is Tensor and mask.dtype == DT_BOOL and mask.shape == [n]):
						return "RESET.options.reset_mask must be a bool tensor of shape (%d,), got %s" % [n, W.describe(mask)]
		return ""

	# ---- §9 space descriptors: [] when valid, else [code, why] (BAD_SPACE, UNKNOWN_DTYPE,
	# TOO_DEEP). The same rules as the Python reference's rlay.spaces.from_descriptor.

	const SPACE_FIELDS := {
		"box": ["dtype", "shape", "low", "high"], "discrete": ["n", "start", "dtype"],
		"multi_discrete": ["nvec", "start"], "multi_binary": ["n"],
		"text": ["min_length", "max_length", "charset"], "dict": ["spaces"], "tuple": ["spaces"],
		"sequence": ["space", "stack"], "graph": ["node_space", "edge_space"], "one_of": ["spaces"],
	}
	# Integer dtype ranges (uint64's maximum does not fit an int: handled apart).
	const INT_RANGE := {
		"int8": [-128, 127], "int16": [-32768, 32767], "int32": [-2147483648, 2147483647],
		"int64": [-9223372036854775807 - 1, 9223372036854775807], "uint8": [0, 255],
		"uint16": [0, 65535], "uint32": [0, 4294967295], "uint64": [0, 9223372036854775807],
	}

	static func check_space(desc, where: String, depth: int = 1) -> Array:
		if depth > MAX_DEPTH:
			return [TOO_DEEP, "%s: spaces nested deeper than %d" % [where, MAX_DEPTH]]
		if typeof(desc) != TYPE_DICTIONARY:
			return [BAD_SPACE, "%s: expected a space descriptor (a map), got %s" % [where, W.describe(desc)]]
		var kind = desc.get("kind")
		if typeof(kind) != TYPE_STRING or not SPACE_FIELDS.has(kind):
			return [BAD_SPACE, "%s.kind: expected one of %s, got %s" % [where, str(SPACE_FIELDS.keys()), W.describe(kind)]]
		var fields: Array = SPACE_FIELDS[kind]
		for f in fields:
			if not desc.has(f):
				return [BAD_SPACE, "%s: a '%s' descriptor needs the field %s" % [where, kind, f]]
		if desc.size() != fields.size() + 1:
			return [BAD_SPACE, "%s: a '%s' descriptor has exactly the fields kind, %s" % [where, kind, PoolStringArray(fields).join(", ")]]
		match kind:
			"box":
				var dt = desc["dtype"]
				if typeof(dt) != TYPE_STRING:
					return [BAD_SPACE, "%s.dtype: expected a dtype name, got %s" % [where, W.describe(dt)]]
				if not DTYPE_CODES.has(dt):
					return [UNKNOWN_DTYPE, "%s.dtype: unknown dtype %s" % [where, dt.left(40)]]
				var shape = desc["shape"]
				var ok_shape: bool = typeof(shape) == TYPE_ARRAY and shape.size() <= MAX_NDIM
				if ok_shape:
					for d in shape:
						if typeof(d) != TYPE_INT or d < 0:
							ok_shape = false
				if not ok_shape:
					return [BAD_SPACE, "%s.shape: expected an array of at most %d ints >= 0, got %s" % [where, MAX_NDIM, W.describe(shape)]]
				var lo = desc["low"]
				var hi = desc["high"]
				for pair in [["low", lo], ["high", hi]]:
					var t = pair[1]
					if not (typeof(t) == TYPE_OBJECT and t is Tensor) or t.dtype != DTYPE_CODES[dt] or t.shape != shape:
						return [BAD_SPACE, "%s.%s: expected a %s%s tensor, got %s" % [where, pair[0], dt, str(shape), W.describe(t)]]
				var los: Array = lo.to_array()
				var his: Array = hi.to_array()
				var unsigned64: bool = dt == "uint64"
				for i in range(los.size()):
					if typeof(los[i]) == TYPE_REAL and (is_nan(los[i]) or is_nan(his[i])):
						return [BAD_SPACE, "%s: a NaN bound at element %d" % [where, i]]
					if W.u_gt(los[i], his[i]) if unsigned64 else los[i] > his[i]:
						return [BAD_SPACE, "%s: low > high at element %d" % [where, i]]
			"discrete":
				var n = desc["n"]
				var start = desc["start"]
				var dt2 = desc["dtype"]
				if typeof(n) != TYPE_INT or n < 1:
					return [BAD_SPACE, "%s.n: expected an int >= 1, got %s" % [where, W.describe(n)]]
				if not W.is_int(start):
					return [BAD_SPACE, "%s.start: expected an int, got %s" % [where, W.describe(start)]]
				if typeof(dt2) != TYPE_STRING:
					return [BAD_SPACE, "%s.dtype: expected a dtype name, got %s" % [where, W.describe(dt2)]]
				if not DTYPE_CODES.has(dt2):
					return [UNKNOWN_DTYPE, "%s.dtype: unknown dtype %s" % [where, dt2.left(40)]]
				if not INT_RANGE.has(dt2):
					return [BAD_SPACE, "%s.dtype: expected an integer dtype, got %s" % [where, dt2]]
				var r: Array = INT_RANGE[dt2]
				if n > r[1]:
					return [BAD_SPACE, "%s.n: %d is outside the %s range" % [where, n, dt2]]
				if start is U64:
					# §9: a uint64 Discrete may start at 2^63 or above (held as its unsigned bits).
					if dt2 != "uint64":
						return [BAD_SPACE, "%s.start: %s is outside the %s range" % [where, str(start), dt2]]
					if start.bits + (n - 1) >= 0:  # the unsigned sum wrapped past 2^64 - 1
						return [BAD_SPACE, "%s: the last value start + n - 1 is above the uint64 maximum" % where]
				else:
					if start < r[0] or start > r[1]:
						return [BAD_SPACE, "%s.start: %d is outside the %s range" % [where, start, dt2]]
					if dt2 != "uint64" and start > 0 and n - 1 > r[1] - start:
						return [BAD_SPACE, "%s: the last value start + n - 1 is above the %s maximum" % [where, dt2]]
			"multi_discrete":
				var nvec = desc["nvec"]
				var st = desc["start"]
				if not (typeof(nvec) == TYPE_OBJECT and nvec is Tensor) or not INT_RANGE.has(nvec.dtype_name()):
					return [BAD_SPACE, "%s.nvec: expected an integer tensor, got %s" % [where, W.describe(nvec)]]
				if not (typeof(st) == TYPE_OBJECT and st is Tensor) or st.dtype != nvec.dtype or st.shape != nvec.shape:
					return [BAD_SPACE, "%s.start: expected a %s%s tensor, got %s" % [where, nvec.dtype_name(), str(nvec.shape), W.describe(st)]]
				var ns: Array = nvec.to_array()
				for i in range(ns.size()):
					if ns[i] == 0 or (ns[i] < 0 and nvec.dtype != DT_UINT64):
						return [BAD_SPACE, "%s.nvec: element %d = %d, expected >= 1" % [where, i, ns[i]]]
			"multi_binary":
				var mb = desc["n"]
				var ok_mb := false
				if typeof(mb) == TYPE_INT:
					ok_mb = mb >= 1
				elif typeof(mb) == TYPE_ARRAY and mb.size() <= MAX_NDIM:
					ok_mb = true
					for d in mb:
						if typeof(d) != TYPE_INT or d < 1:
							ok_mb = false
				if not ok_mb:
					return [BAD_SPACE, "%s.n: expected an int >= 1 or an array of at most %d ints >= 1, got %s" % [where, MAX_NDIM, W.describe(mb)]]
			"text":
				var mn = desc["min_length"]
				var mx = desc["max_length"]
				if typeof(mn) != TYPE_INT or mn < 0 or typeof(mx) != TYPE_INT or mx < 0:
					return [BAD_SPACE, "%s: min_length and max_length must be ints >= 0" % where]
				if mn > mx:
					return [BAD_SPACE, "%s: min_length %d > max_length %d" % [where, mn, mx]]
				var cs = desc["charset"]
				var cps = W.code_points(cs)
				if cps == null:
					return [BAD_SPACE, "%s.charset: expected a str, got %s" % [where, W.describe(cs)]]
				for i in range(1, cps.size()):
					if cps[i - 1] >= cps[i]:
						return [BAD_SPACE, "%s.charset: expected each character once, in ascending code-point order (U+%04X before U+%04X at %d)" % [where, cps[i - 1], cps[i], i]]
			"dict":
				var subs = desc["spaces"]
				if typeof(subs) != TYPE_DICTIONARY:
					return [BAD_SPACE, "%s.spaces: expected a map of str to space, got %s" % [where, W.describe(subs)]]
				for k in subs:
					var bad := W.check_space(subs[k], "%s.spaces[%s]" % [where, str(k).left(40)], depth + 1)
					if bad.size() > 0:
						return bad
			"tuple", "one_of":
				var subs2 = desc["spaces"]
				if typeof(subs2) != TYPE_ARRAY or (kind == "one_of" and subs2.size() == 0):
					return [BAD_SPACE, "%s.spaces: expected %s array of spaces, got %s" % [where, "a non-empty" if kind == "one_of" else "an", W.describe(subs2)]]
				for i in range(subs2.size()):
					var bad2 := W.check_space(subs2[i], "%s.spaces[%d]" % [where, i], depth + 1)
					if bad2.size() > 0:
						return bad2
			"sequence":
				if typeof(desc["stack"]) != TYPE_BOOL:
					return [BAD_SPACE, "%s.stack: expected a bool, got %s" % [where, W.describe(desc["stack"])]]
				return W.check_space(desc["space"], where + ".space", depth + 1)
			"graph":
				for part in ["node_space", "edge_space"]:
					var sub = desc[part]
					if part == "edge_space" and sub == null:
						continue
					if typeof(sub) != TYPE_DICTIONARY or not sub.get("kind") in ["box", "discrete"]:
						return [BAD_SPACE, "%s.%s: expected a 'box' or 'discrete' space%s, got %s" % [where, part, " or nil" if part == "edge_space" else "", W.describe(sub)]]
					var bad3 := W.check_space(sub, "%s.%s" % [where, part], depth + 1)
					if bad3.size() > 0:
						return bad3
		return []

	# a > b for two uint64 held in signed ints (or U64 objects).
	static func u_gt(a, b) -> bool:
		var x: int = a.bits if typeof(a) == TYPE_OBJECT else a
		var y: int = b.bits if typeof(b) == TYPE_OBJECT else b
		return (x ^ (-9223372036854775807 - 1)) > (y ^ (-9223372036854775807 - 1))

	# The code points of a str (String or NulStr), or null for anything else.
	static func code_points(v):
		var out := []
		if typeof(v) == TYPE_STRING:
			for i in range(v.length()):
				out.append(v.ord_at(i))
			return out
		if typeof(v) == TYPE_OBJECT and v is NulStr:
			var b: PoolByteArray = v.utf8  # valid UTF-8: the decoder checked it
			var i := 0
			while i < b.size():
				var c: int = b[i]
				var need := 0 if c < 0x80 else (1 if c < 0xe0 else (2 if c < 0xf0 else 3))
				var cp: int = c if need == 0 else (c & (0x3f >> need))
				for k in range(1, need + 1):
					cp = (cp << 6) | (b[i + k] & 0x3f)
				out.append(cp)
				i += need + 1
			return out
		return null


# ------------------------------------------------------------------------------------------------
# Tensor constructors (for observations, info values, space bounds)

static func tensor(dtype_name: String, shape: Array, values) -> Tensor:
	# values: an Array / PoolRealArray / PoolIntArray of numbers (or bools), C order.
	var code: int = DTYPE_CODES[dtype_name]
	var s := StreamPeerBuffer.new()
	for v in values:
		match code:
			1: s.put_u8(1 if v else 0)
			2, 6: s.put_8(int(v))
			3, 7: s.put_16(int(v))
			4, 8: s.put_32(int(v))
			5, 9: s.put_64(v.bits if v is U64 else int(v))
			10: s.put_16(_float_to_half(float(v)))
			11: s.put_float(float(v))
			12: s.put_double(v * 1.0)
	return Tensor.new(code, shape.duplicate(), s.data_array)


static func tensor_filled(dtype_name: String, shape: Array, value) -> Tensor:
	var n := 1
	for d in shape:
		n *= d
	var values := []
	values.resize(n)
	for i in range(n):
		values[i] = value
	return tensor(dtype_name, shape, values)


static func _float_to_half(f: float) -> int:
	# Round to nearest even, enough for bounds; the wire value is what matters.
	var s := StreamPeerBuffer.new()
	s.put_float(f)
	s.seek(0)
	var x := s.get_u32()
	var sg := (x >> 16) & 0x8000
	var e := ((x >> 23) & 0xff) - 127 + 15
	var m := x & 0x7fffff
	if ((x >> 23) & 0xff) == 0xff:
		return sg | 0x7c00 | (0x200 if m != 0 else 0)
	if e >= 31:
		return sg | 0x7c00
	if e <= 0:
		if e < -10:
			return sg
		m = (m | 0x800000) >> (1 - e)
		return sg | ((m + 0x1000) >> 13)
	var h := sg | (e << 10) | (m >> 13)
	if (m & 0x1fff) > 0x1000 or ((m & 0x1fff) == 0x1000 and (h & 1)):
		h += 1
	return h


# ------------------------------------------------------------------------------------------------
# Encoder: a value tree -> body bytes + data section (§3, §4, §5 canonical form)

class Encoder:
	var out := StreamPeerBuffer.new()
	var data := StreamPeerBuffer.new()
	var err := ""

	func _init():
		out.big_endian = true

	func value(v) -> void:
		if err != "":
			return
		match typeof(v):
			TYPE_NIL:
				out.put_u8(0xc0)
			TYPE_BOOL:
				out.put_u8(0xc3 if v else 0xc2)
			TYPE_INT:
				_int(v)
			TYPE_REAL:
				out.put_u8(0xcb)
				out.put_double(v)
			TYPE_STRING:
				var b: PoolByteArray = v.to_utf8()
				_head(b.size(), 0xa0, 31, 0xd9)
				out.put_data(b)
			TYPE_RAW_ARRAY:
				_head(v.size(), -1, 0, 0xc4)
				out.put_data(v)
			TYPE_ARRAY:
				_head(v.size(), 0x90, 15, 0xdc - 1)
				for x in v:
					value(x)
			TYPE_DICTIONARY:
				_head(v.size(), 0x80, 15, 0xde - 1)
				for k in v:
					if typeof(k) != TYPE_STRING and not (k is NulStr):
						err = "a map key must be a String, got %s" % str(k).left(40)
						return
					value(k)
					value(v[k])
			TYPE_REAL_ARRAY:
				var s := StreamPeerBuffer.new()
				for x in v:
					s.put_float(x)
				_tensor(Tensor.new(DT_FLOAT32, [v.size()], s.data_array))
			TYPE_INT_ARRAY:
				var s := StreamPeerBuffer.new()
				for x in v:
					s.put_32(x)
				_tensor(Tensor.new(DT_INT32, [v.size()], s.data_array))
			TYPE_OBJECT:
				if v is Tensor:
					_tensor(v)
				elif v is NulStr:
					_head(v.utf8.size(), 0xa0, 31, 0xd9)
					out.put_data(v.utf8)
				elif v is U64:
					out.put_u8(0xcf)
					out.put_64(v.bits)
				else:
					err = "cannot encode the object %s (use Rlay.tensor for arrays)" % str(v).left(60)
			_:
				err = "cannot encode a value of Godot type %d (%s); use null, bool, int, float, String, PoolByteArray, Array, Dictionary or Rlay.Tensor" % [typeof(v), str(v).left(40)]

	func _int(v: int) -> void:
		if v >= 0:
			if v < 128:
				out.put_u8(v)
			elif v < 256:
				out.put_u8(0xcc)
				out.put_u8(v)
			elif v < 65536:
				out.put_u8(0xcd)
				out.put_u16(v)
			elif v < 4294967296:
				out.put_u8(0xce)
				out.put_u32(v)
			else:
				out.put_u8(0xcf)
				out.put_64(v)
		else:
			if v >= -32:
				out.put_u8(v & 0xff)
			elif v >= -128:
				out.put_u8(0xd0)
				out.put_8(v)
			elif v >= -32768:
				out.put_u8(0xd1)
				out.put_16(v)
			elif v >= -2147483648:
				out.put_u8(0xd2)
				out.put_32(v)
			else:
				out.put_u8(0xd3)
				out.put_64(v)

	# The shortest header: fix form (when fix >= 0 and n <= fixmax), else the 8/16/32 forms
	# (base8 is the 8-bit form's byte; array and map have no 8-bit form: base8 + 1 is 16-bit).
	func _head(n: int, fix: int, fixmax: int, base8: int) -> void:
		if fix >= 0 and n <= fixmax:
			out.put_u8(fix | n)
		elif n < 256 and (base8 == 0xd9 or base8 == 0xc4):
			out.put_u8(base8)
			out.put_u8(n)
		elif n < 65536:
			out.put_u8(base8 + 1)
			out.put_u16(n)
		else:
			out.put_u8(base8 + 2)
			out.put_u32(n)

	func _tensor(t: Tensor) -> void:
		if not DTYPES.has(t.dtype):
			err = "tensor with unknown dtype code %d" % t.dtype
			return
		if t.shape.size() > MAX_NDIM:
			err = "tensor with %d dimensions (limit 32)" % t.shape.size()
			return
		var nbytes := t.size() * t.itemsize()
		if nbytes != t.data.size():
			err = "tensor %s%s holds %d bytes, expected %d" % [t.dtype_name(), str(t.shape), t.data.size(), nbytes]
			return
		var offset := 0
		if nbytes > 0:
			offset = data.get_size()
			var pad := (8 - offset % 8) % 8
			for i in range(pad):
				data.put_u8(0)
			offset += pad
			data.put_data(t.data)
		var n := t.shape.size()
		out.put_u8(0xc7)
		out.put_u8(6 + 4 * n)
		out.put_u8(1)
		out.put_u8(t.dtype)
		out.put_u8(n)
		for d in t.shape:
			_u32le(d)
		_u32le(offset)

	func _u32le(x: int) -> void:
		out.put_u8(x & 0xff)
		out.put_u8((x >> 8) & 0xff)
		out.put_u8((x >> 16) & 0xff)
		out.put_u8((x >> 24) & 0xff)


# ------------------------------------------------------------------------------------------------
# Decoder: body bytes + data section -> a value tree (§3, §4), with a sticky error

class Decoder:
	var buf: PoolByteArray
	var data: PoolByteArray
	var pos := 0
	var max_depth := MAX_DEPTH
	var max_values := DEFAULT_MAX_VALUES
	var values := 1  # §3: values declared so far (the body's one value, then each header's count)
	var err := 0
	var err_msg := ""

	func _init(p_body: PoolByteArray, p_data: PoolByteArray = PoolByteArray()):
		buf = p_body
		data = p_data

	func fail(code: int, why: String):
		if err == 0:
			err = code
			err_msg = why
		return null

	# The one value of the body; trailing bytes are MALFORMED.
	func decode_body():
		var v = value(1)
		if err == 0 and pos != buf.size():
			return fail(MALFORMED, "%d trailing bytes after the body's value" % (buf.size() - pos))
		return v

	func _need(n: int) -> bool:
		if n > buf.size() - pos:
			fail(MALFORMED, "the body ends inside a value (need %d bytes at %d, have %d)" % [n, pos, buf.size() - pos])
			return false
		return true

	func _be(n: int) -> int:  # big-endian unsigned of n bytes (n = 8 wraps to the signed bits)
		var v := 0
		for i in range(n):
			v = (v << 8) | buf[pos + i]
		pos += n
		return v

	func value(depth: int):
		if err != 0:
			return null
		if not _need(1):
			return null
		var b: int = buf[pos]
		pos += 1
		if b <= 0x7f:
			return b
		if b >= 0xe0:
			return b - 256
		if b <= 0x8f:
			return _map(b & 0x0f, depth)
		if b <= 0x9f:
			return _array(b & 0x0f, depth)
		if b <= 0xbf:
			return _str(b & 0x1f)
		match b:
			0xc0:
				return null
			0xc2:
				return false
			0xc3:
				return true
			0xc4, 0xc5, 0xc6:
				var w: int = [1, 2, 4][b - 0xc4]
				if not _need(w):
					return null
				var n := _be(w)
				if not _need(n):
					return null
				var out := PoolByteArray() if n == 0 else buf.subarray(pos, pos + n - 1)
				pos += n
				return out
			0xc7, 0xc8, 0xc9:
				var w2: int = [1, 2, 4][b - 0xc7]
				if not _need(w2):
					return null
				return _ext(_be(w2))
			0xca:
				if not _need(4):
					return null
				var s := StreamPeerBuffer.new()
				s.big_endian = true
				s.data_array = buf.subarray(pos, pos + 3)
				pos += 4
				return float(s.get_float())
			0xcb:
				if not _need(8):
					return null
				var s2 := StreamPeerBuffer.new()
				s2.big_endian = true
				s2.data_array = buf.subarray(pos, pos + 7)
				pos += 8
				return s2.get_double()
			0xcc, 0xcd, 0xce:
				var w3: int = [1, 2, 4][b - 0xcc]
				if not _need(w3):
					return null
				return _be(w3)
			0xcf:
				if not _need(8):
					return null
				var u := _be(8)
				return U64.new(u) if u < 0 else u
			0xd0, 0xd1, 0xd2, 0xd3:
				var w4: int = [1, 2, 4, 8][b - 0xd0]
				if not _need(w4):
					return null
				var x := _be(w4)
				if w4 < 8 and x >= (1 << (8 * w4 - 1)):
					x -= 1 << (8 * w4)
				return x
			0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
				return _ext([1, 2, 4, 8, 16][b - 0xd4])
			0xd9, 0xda, 0xdb:
				var w5: int = [1, 2, 4][b - 0xd9]
				if not _need(w5):
					return null
				return _str(_be(w5))
			0xdc, 0xdd:
				var w6: int = [2, 4][b - 0xdc]
				if not _need(w6):
					return null
				return _array(_be(w6), depth)
			0xde, 0xdf:
				var w7: int = [2, 4][b - 0xde]
				if not _need(w7):
					return null
				return _map(_be(w7), depth)
		return fail(MALFORMED, "byte 0x%02x (at %d) is not in rlay's MessagePack subset" % [b, pos - 1])

	func _str(n: int):
		if not _need(n):
			return null
		if n == 0:
			return ""
		var raw := buf.subarray(pos, pos + n - 1)
		pos += n
		var why := W.utf8_problem(raw)
		if why != "":
			return fail(MALFORMED, "str is not valid UTF-8: " + why)
		for i in range(n):
			if raw[i] == 0:
				return NulStr.new(raw)
		return raw.get_string_from_utf8()

	func _array(n: int, depth: int):
		if depth > max_depth:
			return fail(TOO_DEEP, "nesting deeper than %d" % max_depth)
		if not _need(n):  # every element takes at least one byte
			return null
		if not _count(n):
			return null
		var out := []
		out.resize(n)
		for i in range(n):
			out[i] = value(depth + 1)
			if err != 0:
				return null
		return out

	func _map(n: int, depth: int):
		if depth > max_depth:
			return fail(TOO_DEEP, "nesting deeper than %d" % max_depth)
		if n > (buf.size() - pos) / 2:
			return fail(MALFORMED, "map of %d pairs in %d remaining bytes" % [n, buf.size() - pos])
		if not _count(2 * n):
			return null
		var out := {}
		for i in range(n):
			var k = value(depth + 1)
			if err != 0:
				return null
			if typeof(k) != TYPE_STRING and not (typeof(k) == TYPE_OBJECT and k is NulStr):
				return fail(MALFORMED, "a map key must be a str, got %s" % W._type_name(k))
			if out.has(k):
				return fail(MALFORMED, "duplicate map key %s" % k.left(40))
			var v = value(depth + 1)
			if err != 0:
				return null
			out[k] = v
		return out

	func _ext(n: int):
		if not _need(1 + n):
			return null
		var t: int = buf[pos]
		pos += 1
		if t != 1:
			return fail(MALFORMED, "ext type %d (only 1, the tensor, is allowed)" % (t - 256 if t >= 128 else t))
		if not _count(TENSOR_VALUES - 1):  # §3: a tensor counts as 8 values
			return null
		var start := pos
		pos += n
		if n < 6:
			return fail(BAD_TENSOR, "tensor descriptor of %d bytes, need at least 6" % n)
		var code: int = buf[start]
		var ndim: int = buf[start + 1]
		if ndim > MAX_NDIM:
			return fail(BAD_TENSOR, "tensor has %d dimensions, limit %d" % [ndim, MAX_NDIM])
		if n != 6 + 4 * ndim:
			return fail(BAD_TENSOR, "tensor descriptor of %d bytes for %d dimensions (need %d)" % [n, ndim, 6 + 4 * ndim])
		if not DTYPES.has(code):
			return fail(UNKNOWN_DTYPE, "unknown dtype code %d" % code)
		var shape := []
		var zero := false
		for i in range(ndim):
			var d := _le32(start + 2 + 4 * i)
			shape.append(d)
			if d == 0:
				zero = true
		var offset := _le32(start + 2 + 4 * ndim)
		if offset % 8 != 0:
			return fail(BAD_TENSOR, "tensor offset %d is not a multiple of 8" % offset)
		var nbytes := 0
		if not zero:
			nbytes = DTYPES[code][1]
			for d in shape:
				nbytes *= d
				if nbytes > data.size():  # stop before the product can overflow
					break
		if offset > data.size() or nbytes > data.size() - offset:
			return fail(BAD_TENSOR, "tensor bytes [%d, +%d) outside the data section of %d bytes" % [offset, nbytes, data.size()])
		var bytes := PoolByteArray() if nbytes == 0 else data.subarray(offset, offset + nbytes - 1)
		if code == DT_BOOL:
			for i in range(nbytes):
				if bytes[i] > 1:
					return fail(BAD_TENSOR, "bool tensor holds the byte %d (only 0 or 1)" % bytes[i])
		return Tensor.new(code, shape, bytes)

	# §3/§13: a container header or tensor adds what it declares, checked before allocating.
	func _count(n: int) -> bool:
		values += n
		if values > max_values:
			fail(FRAME_TOO_LARGE, "the body declares more than %d values (max_values, spec §13)" % max_values)
			return false
		return true

	func _le32(at: int) -> int:
		return buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | (buf[at + 3] << 24)


# ------------------------------------------------------------------------------------------------
# Frames out of a byte stream (§2), checks in the spec's order

class FrameReader:
	var rx := PoolByteArray()
	var max_frame_size := DEFAULT_MAX_FRAME_SIZE
	# §13: the limit of the first frame (0: none, a stand-alone reader); cleared once it is cut.
	var max_first_frame_size := 0
	var err := 0
	var err_msg := ""

	func feed(bytes: PoolByteArray) -> void:
		rx.append_array(bytes)

	func fail(code: int, why: String):
		if err == 0:
			err = code
			err_msg = why
		return null

	# The next whole frame as [kind, data, body], or null (need more bytes, or err is set).
	func next_frame():
		if err != 0:
			return null
		var n := rx.size()
		if n >= 1 and rx[0] != 0x52:
			return fail(BAD_MAGIC, "the stream does not start with the magic 'RL' (first byte 0x%02x)" % rx[0])
		if n >= 2 and rx[1] != 0x4c:
			return fail(BAD_MAGIC, "the stream does not start with the magic 'RL' (0x%02x%02x)" % [rx[0], rx[1]])
		if n < 12:
			return null
		var kind: int = rx[2]
		var flags: int = rx[3]
		var data_len: int = rx[4] | (rx[5] << 8) | (rx[6] << 16) | (rx[7] << 24)
		var body_len: int = rx[8] | (rx[9] << 8) | (rx[10] << 16) | (rx[11] << 24)
		if flags != 0:
			return fail(BAD_HEADER, "frame flags 0x%02x (v1 sends 0)" % flags)
		if body_len < 1:
			return fail(BAD_HEADER, "frame with an empty body")
		if data_len + body_len > max_frame_size:
			return fail(FRAME_TOO_LARGE, "frame of %d bytes, limit %d" % [data_len + body_len, max_frame_size])
		if max_first_frame_size > 0 and data_len + body_len > max_first_frame_size:
			return fail(FRAME_TOO_LARGE, "first frame of %d bytes, limit %d before the handshake (spec §13)" % [data_len + body_len, max_first_frame_size])
		if not KIND_NAMES.has(kind):
			return fail(UNKNOWN_KIND, "unknown message kind %d" % kind)
		var total := 12 + data_len + body_len
		if n < total:
			return null
		var data := PoolByteArray() if data_len == 0 else rx.subarray(12, 12 + data_len - 1)
		var body := rx.subarray(12 + data_len, total - 1)
		rx = PoolByteArray() if n == total else rx.subarray(total, n - 1)
		max_first_frame_size = 0
		return [kind, data, body]

	# End of stream: inside a frame it is TRUNCATED; between frames it is the orderly end.
	func feed_eof() -> void:
		if err == 0 and rx.size() > 0:
			fail(TRUNCATED, "the stream ended inside a frame (%d bytes of it received)" % rx.size())


# ------------------------------------------------------------------------------------------------
# Connection: one side of one session (§7, §8), sans-I/O
#
# Create it when the stream is up (it queues its own HELLO), then: feed received bytes with
# receive_data (receive_eof at end of stream) and call next_event until it returns null; send
# replies with send(); write out what take_output() returns. On a protocol error next_event
# returns null with `err` set, a fatal ERROR is queued for the peer and the state is "closed".

class Connection:
	var role: String
	var state := "hello"
	var reader := FrameReader.new()
	var output := PoolByteArray()
	var err := 0
	var err_msg := ""
	var max_depth := MAX_DEPTH
	var max_values := DEFAULT_MAX_VALUES
	var peer_hello = null
	var eof := false
	# ENV_INFO's num_envs once it was sent or received (§10), else 0: RESET's seed and
	# reset_mask and every reply's reward / flags / value / frame are checked against it.
	var num_envs := 0

	func _init(p_role: String = "env", capabilities: Dictionary = {}):
		role = p_role
		reader.max_first_frame_size = DEFAULT_MAX_HANDSHAKE_FRAME_SIZE  # §13
		_write(HELLO, {"protocol": PROTOCOL, "version": VERSION, "role": role,
			"sdk": SDK_NAME, "sdk_version": SDK_VERSION, "capabilities": capabilities})

	func peer() -> String:
		return "agent" if role == "env" else "env"

	func receive_data(bytes: PoolByteArray) -> void:
		reader.feed(bytes)

	func receive_eof() -> void:
		eof = true

	func take_output() -> PoolByteArray:
		var out := output
		output = PoolByteArray()
		return out

	func _write(kind: int, body: Dictionary) -> String:
		var why := []
		var frame := W.encode_frame(kind, body, why)
		if why.size() > 0:
			return why[0]
		output.append_array(frame)
		return ""

	func _fail(code: int, why: String):
		if err == 0:
			err = code
			err_msg = why
		if state != "closed":
			_write(ERROR, {"code": code, "message": why, "fatal": true, "remote_type": null, "traceback": null})
			state = "closed"
		return null

	# The next message from the peer, or null (more bytes needed, the stream ended, or `err`).
	func next_event():
		if err != 0:
			return null
		var frame = reader.next_frame()
		if reader.err != 0:
			return _fail(reader.err, reader.err_msg)
		if frame == null:
			if eof:
				reader.feed_eof()
				if reader.err != 0:
					return _fail(reader.err, reader.err_msg)
			return null
		return _receive(frame[0], frame[1], frame[2])

	func _receive(kind: int, data: PoolByteArray, body: PoolByteArray):
		# §8's order: (header, done by the reader,) body, state table, fields.
		var d := Decoder.new(body, data)
		d.max_depth = max_depth
		d.max_values = max_values
		var v = d.decode_body()
		if d.err != 0:
			return _fail(d.err, d.err_msg)
		var sender: String = SENDER[kind]
		var name: String = KIND_NAMES[kind]
		if sender == role:
			return _fail(UNEXPECTED_MESSAGE, "received %s in state '%s', but only the %s side sends it and that is this side" % [name, state, sender])
		var nxt = null
		if kind != ERROR:
			nxt = TRANSITIONS[state].get(kind)
			if nxt == null:
				return _fail(UNEXPECTED_MESSAGE, "received %s in state '%s' (role %s)" % [name, state, role])
		if kind == HELLO:
			var bad := _check_hello_head(v)
			if bad.size() > 0:
				return _fail(bad[0], bad[1])
		var canon := []
		var bad_fields := W.check_fields(kind, v, canon)
		if bad_fields.size() > 0:
			return _fail(bad_fields[0], bad_fields[1])
		var m := Message.new(kind, canon[0])
		if kind == ERROR:
			if m.body["code"] is int and m.body["code"] <= BAD_VALUE:
				m.body["fatal"] = true  # §11: codes 1-15 are always fatal, whatever the flag says
			nxt = _after_error(m.body["fatal"])
			if nxt == null:
				return _fail(UNEXPECTED_MESSAGE, "received a %s ERROR in state '%s' (role %s)" % ["fatal" if m.body["fatal"] else "non-fatal", state, role])
		elif kind == HELLO:
			peer_hello = m.body
		elif kind == ENV_INFO:
			num_envs = m.body["num_envs"]
		elif num_envs > 0:
			var bad_batch := W.check_batch(m, num_envs)
			if bad_batch != "":
				return _fail(BAD_FIELD, bad_batch)
		state = nxt
		return m

	func _after_error(fatal: bool):
		if state == "closed":
			return null
		if fatal:
			return "closed"
		if peer() == "env" and state in ["reset", "step", "render", "call"]:
			return "idle"
		if peer() == "env" and state == "close":
			return "closed"
		return null

	func _check_hello_head(v) -> Array:
		# §7: protocol, version, role, in that order, before any other field.
		if typeof(v) != TYPE_DICTIONARY:
			return [BAD_FIELD, "HELLO body must be a map"]
		var protocol = v.get("protocol")
		if typeof(protocol) != TYPE_STRING or protocol != PROTOCOL:
			return [BAD_MAGIC, "the peer's HELLO names protocol %s, not 'rlay'" % str(protocol).left(40)]
		var version = v.get("version")
		if typeof(version) != TYPE_INT or version != VERSION:
			return [VERSION_MISMATCH, "protocol version mismatch: this side speaks %d, the peer speaks %s" % [VERSION, str(version).left(20)]]
		var r = v.get("role")
		if typeof(r) != TYPE_STRING or r != peer():
			if typeof(r) == TYPE_STRING and r == role:
				return [ROLE_CONFLICT, "both sides claim the role '%s'" % role]
			return [ROLE_CONFLICT, "the peer's role %s is not '%s'" % [str(r).left(20), peer()]]
		return []

	# Send a message of this side (its fields in canonical order). Returns "" or why not.
	func send(kind: int, body: Dictionary) -> String:
		if state == "closed":
			return "the session is closed"
		var nxt = null
		if kind == ERROR:
			var fatal: bool = body.get("fatal", true)
			if fatal:
				nxt = "closed"
			elif role == "env" and state in ["reset", "step", "render", "call"]:
				nxt = "idle"
			elif role == "env" and state == "close":
				nxt = "closed"
		elif SENDER[kind] == role or SENDER[kind] == "":
			nxt = TRANSITIONS[state].get(kind)
		if nxt == null:
			return "cannot send %s in state '%s' (role %s)" % [KIND_NAMES.get(kind, str(kind)), state, role]
		var why := _write(kind, body)
		if why != "":
			return why
		state = nxt
		if kind == ENV_INFO:
			num_envs = body["num_envs"]
		return ""
