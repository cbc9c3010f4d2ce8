# Spaces (spec §9) for the rlay Godot addon: descriptor builders, Godot values <-> wire values,
# bounds checks for actions, and the §10 batching of values for N sub-envs.
#     const Spaces = preload("res://addons/rlay/spaces.gd")
#     var obs_space = Spaces.box(-1.0, 1.0, [4], "float32")
#
# Supported for values: every kind of §9 (box, discrete, multi_discrete, multi_binary, text,
# dict, tuple, sequence, graph, one_of), nested.
extends Reference

const Rlay = preload("res://addons/rlay/rlay.gd")


# ---- descriptors (maps in the canonical field order of §9) ------------------------------------

# low/high: a number (the same bound everywhere) or an Array of numbers (per element, C order).
# Floats may be INF / -INF.
static func box(low, high, shape: Array, dtype: String = "float32") -> Dictionary:
	return {"kind": "box", "dtype": dtype, "shape": shape.duplicate(),
		"low": _bound(low, shape, dtype), "high": _bound(high, shape, dtype)}


static func _bound(v, shape: Array, dtype: String):
	if typeof(v) == TYPE_OBJECT and v is Rlay.Tensor:
		return v
	if typeof(v) in [TYPE_ARRAY, TYPE_REAL_ARRAY, TYPE_INT_ARRAY]:
		return Rlay.tensor(dtype, shape, v)
	return Rlay.tensor_filled(dtype, shape, v)


# start: an int, or an Rlay.U64 for a uint64 Discrete starting at 2^63 or above (§9).
static func discrete(n: int, start = 0, dtype: String = "int64") -> Dictionary:
	return {"kind": "discrete", "n": n, "start": start, "dtype": dtype}


static func multi_discrete(nvec: Array, start = null, dtype: String = "int64") -> Dictionary:
	var s = start
	if s == null:
		s = []
		for _i in nvec:
			s.append(0)
	return {"kind": "multi_discrete", "nvec": Rlay.tensor(dtype, [nvec.size()], nvec),
		"start": Rlay.tensor(dtype, [nvec.size()], s)}


static func multi_binary(n) -> Dictionary:
	return {"kind": "multi_binary", "n": n}


# charset: the allowed characters (sorted and de-duplicated here, as §9 wants).
static func text(max_length: int, min_length: int = 1, charset: String = "") -> Dictionary:
	if charset == "":
		charset = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var codes := []
	for i in range(charset.length()):
		var c := charset.ord_at(i)
		if not c in codes:
			codes.append(c)
	codes.sort()
	var s := ""
	for c in codes:
		s += char(c)
	return {"kind": "text", "min_length": min_length, "max_length": max_length, "charset": s}


static func dict(spaces: Dictionary) -> Dictionary:
	return {"kind": "dict", "spaces": spaces}


static func tuple(spaces: Array) -> Dictionary:
	return {"kind": "tuple", "spaces": spaces}


static func sequence(space: Dictionary, stack: bool = false) -> Dictionary:
	return {"kind": "sequence", "space": space, "stack": stack}


# node_space / edge_space: a box or discrete space; edge_space null: a graph without edge
# features, whose values have no edges (§9).
static func graph(node_space: Dictionary, edge_space = null) -> Dictionary:
	return {"kind": "graph", "node_space": node_space, "edge_space": edge_space}


static func one_of(spaces: Array) -> Dictionary:
	return {"kind": "one_of", "spaces": spaces}


# ---- shapes ------------------------------------------------------------------------------------

static func _shape_of(space: Dictionary) -> Array:
	match space["kind"]:
		"box":
			return space["shape"]
		"multi_discrete":
			return space["nvec"].shape
		"multi_binary":
			var n = space["n"]
			return n if typeof(n) == TYPE_ARRAY else [n]
	return []


static func _count(shape: Array) -> int:
	var n := 1
	for d in shape:
		n *= d
	return n


# ---- Godot value -> wire value -----------------------------------------------------------------

# Turns what the game gives (an Array of numbers for a box, an int for a discrete, a Dictionary
# for a dict ...) into the wire value of `space`. Returns [true, value] or [false, why].
static func to_wire(space: Dictionary, v, where: String = "obs") -> Array:
	var kind: String = space["kind"]
	match kind:
		"box", "multi_discrete", "multi_binary":
			var dtype: String = space["dtype"] if kind == "box" else ("int8" if kind == "multi_binary" else space["nvec"].dtype_name())
			var shape := _shape_of(space)
			var flat: Array
			if typeof(v) == TYPE_OBJECT and v is Rlay.Tensor:
				if v.shape != shape:
					return [false, "%s: expected a %s%s tensor, got %s%s" % [where, dtype, str(shape), v.dtype_name(), str(v.shape)]]
				if v.dtype_name() == dtype:
					return [true, v]
				flat = v.to_array()  # another dtype: sent only if every element converts exactly
				if v.dtype == Rlay.DT_UINT64:
					for i in range(flat.size()):
						if flat[i] < 0:
							flat[i] = Rlay.U64.new(flat[i])
			elif typeof(v) in [TYPE_ARRAY, TYPE_REAL_ARRAY, TYPE_INT_ARRAY]:
				flat = _flatten(v)
			else:
				return [false, "%s: expected an Array of %d numbers (or an Rlay.Tensor), got %s" % [where, _count(shape), Rlay.W.describe(v)]]
			if flat.size() != _count(shape):
				return [false, "%s: expected %d numbers for shape %s, got %d" % [where, _count(shape), str(shape), flat.size()]]
			var why := _exact_all(dtype, flat, where)
			if why != "":
				return [false, why]
			return [true, Rlay.tensor(dtype, shape, flat)]
		"discrete":
			var dt: String = space["dtype"]
			var x = v
			if typeof(v) == TYPE_REAL and v == floor(v) and abs(v) < 9.2e18:
				x = int(v)
			elif typeof(v) == TYPE_BOOL:
				x = 1 if v else 0
			if not Rlay.W.is_int(x) or not _int_fits(dt, x):
				return [false, "%s: expected an int of the %s range, got %s" % [where, dt, Rlay.W.describe(v)]]
			return [true, x]
		"text":
			if typeof(v) == TYPE_STRING:
				return [true, v]
			return [false, "%s: expected a String, got %s" % [where, Rlay.W.describe(v)]]
		"dict":
			if typeof(v) != TYPE_DICTIONARY:
				return [false, "%s: expected a Dictionary, got %s" % [where, Rlay.W.describe(v)]]
			var out := {}
			for k in space["spaces"]:
				if not v.has(k):
					return [false, "%s: missing key %s" % [where, k]]
				var r := to_wire(space["spaces"][k], v[k], "%s[%s]" % [where, k])
				if not r[0]:
					return r
				out[k] = r[1]
			if v.size() != out.size():
				return [false, "%s: keys %s, expected %s" % [where, str(v.keys()), str(space["spaces"].keys())]]
			return [true, out]
		"tuple":
			var subs: Array = space["spaces"]
			if typeof(v) != TYPE_ARRAY or v.size() != subs.size():
				return [false, "%s: expected an Array of %d values, got %s" % [where, subs.size(), Rlay.W.describe(v)]]
			var out2 := []
			for i in range(subs.size()):
				var r2 := to_wire(subs[i], v[i], "%s[%d]" % [where, i])
				if not r2[0]:
					return r2
				out2.append(r2[1])
			return [true, out2]
		"sequence":
			if typeof(v) != TYPE_ARRAY:
				return [false, "%s: expected an Array (any length), got %s" % [where, Rlay.W.describe(v)]]
			var out3 := []
			for i in range(v.size()):
				var r3 := to_wire(space["space"], v[i], "%s[%d]" % [where, i])
				if not r3[0]:
					return r3
				out3.append(r3[1])
			return [true, out3]
		"one_of":
			var subs2: Array = space["spaces"]
			if typeof(v) != TYPE_ARRAY or v.size() != 2 or typeof(v[0]) != TYPE_INT or v[0] < 0 or v[0] >= subs2.size():
				return [false, "%s: expected [index, value] with an index below %d, got %s" % [where, subs2.size(), Rlay.W.describe(v)]]
			var r4 := to_wire(subs2[v[0]], v[1], "%s[%d]" % [where, v[0]])
			if not r4[0]:
				return r4
			return [true, [v[0], r4[1]]]
		"graph":
			return _graph_to_wire(space, v, where)
	return [false, "%s: unknown space kind %s" % [where, kind]]


# §9 "An env side's own observations": never rounded. Every element must convert exactly to
# `dtype` (NaN to NaN); "" or why not, naming the first element that would change. Bools become
# 0 / 1 in place (numpy casts them exactly).
static func _exact_all(dtype: String, flat: Array, where: String) -> String:
	var buf := StreamPeerBuffer.new()
	for i in range(flat.size()):
		var x = flat[i]
		if typeof(x) == TYPE_BOOL and dtype != "bool":
			x = 1 if x else 0
			flat[i] = x
		if not _exact(dtype, x, buf):
			return "%s: element %d = %s does not convert exactly to %s (an env side never rounds its observation: convert it in the game, e.g. Rlay.tensor(\"%s\", shape, values))" % [where, i, Rlay.W.describe(x), dtype, dtype]
	return ""


static func _exact(dtype: String, x, buf: StreamPeerBuffer) -> bool:
	var t := typeof(x)
	if t == TYPE_OBJECT and x is Rlay.U64:
		return dtype == "uint64"
	if dtype == "bool":
		return t == TYPE_BOOL or ((t == TYPE_INT or t == TYPE_REAL) and (x == 0 or x == 1))
	if t == TYPE_INT:
		match dtype:
			"float64":
				return abs(x) <= 9007199254740992 or int(float(x)) == x
			"float32", "float16":
				return _float_exact(dtype, float(x), buf) and abs(x) < 16777216 * 16777216
		return _int_fits(dtype, x)
	if t != TYPE_REAL:
		return false
	if is_nan(x) or is_inf(x):
		return dtype.begins_with("float")
	match dtype:
		"float64":
			return true
		"float32", "float16":
			return _float_exact(dtype, x, buf)
	if x != floor(x) or abs(x) >= 9.2e18:
		return false
	return _int_fits(dtype, int(x))


static func _float_exact(dtype: String, x: float, buf: StreamPeerBuffer) -> bool:
	if dtype == "float16":
		return Rlay.W._half_to_float(Rlay._float_to_half(x)) == x
	buf.seek(0)
	buf.put_float(x)
	buf.seek(0)
	return buf.get_float() == x


# Does the int (or Rlay.U64) `x` fit the integer dtype `dtype`?
static func _int_fits(dtype: String, x) -> bool:
	if typeof(x) == TYPE_OBJECT:
		return dtype == "uint64"
	if not Rlay.W.INT_RANGE.has(dtype):
		return false
	var r: Array = Rlay.W.INT_RANGE[dtype]
	return x >= r[0] and x <= r[1]


static func _flatten(v) -> Array:
	var out := []
	for x in v:
		if typeof(x) in [TYPE_ARRAY, TYPE_REAL_ARRAY, TYPE_INT_ARRAY]:
			out += _flatten(x)
		else:
			out.append(x)
	return out


# ---- wire value -> Godot value, with checks ----------------------------------------------------

# The action as the game gets it: box -> Rlay.Tensor (.to_array() for a flat Array),
# discrete -> int, multi_discrete / multi_binary -> Array of int, text -> String,
# dict -> Dictionary, tuple -> Array. Returns [0, value] or [code, why] with code BAD_VALUE
# (the structure is wrong: fatal) or INVALID_ACTION (outside the space: the session goes on).
# With bounds false only the structure is checked (BAD_VALUE): spec §8's order on a STEP is
# structure, then RESET_NEEDED, then bounds.
static func from_wire(space: Dictionary, v, where: String = "action", bounds: bool = true) -> Array:
	var kind: String = space["kind"]
	match kind:
		"box", "multi_discrete", "multi_binary":
			var dtype: String = space["dtype"] if kind == "box" else ("int8" if kind == "multi_binary" else space["nvec"].dtype_name())
			var shape := _shape_of(space)
			if not (typeof(v) == TYPE_OBJECT and v is Rlay.Tensor) or v.dtype_name() != dtype or v.shape != shape:
				return [Rlay.BAD_VALUE, "%s: expected a %s%s tensor, got %s" % [where, dtype, str(shape), Rlay.W.describe(v)]]
			if not bounds:
				return [0, v if kind == "box" else v.to_array()]
			var xs: Array = v.to_array()
			if kind == "box":
				var lo: Array = space["low"].to_array()
				var hi: Array = space["high"].to_array()
				var u64: bool = v.dtype == Rlay.DT_UINT64  # to_array gives its elements' signed bits
				for i in range(xs.size()):
					var outside: bool = (Rlay.W.u_gt(lo[i], xs[i]) or Rlay.W.u_gt(xs[i], hi[i])) if u64 else not (xs[i] >= lo[i] and xs[i] <= hi[i])
					if outside:
						return [Rlay.INVALID_ACTION, "%s: element %d = %s is outside [%s, %s]" % [where, i, str(xs[i]), str(lo[i]), str(hi[i])]]
				return [0, v]
			if kind == "multi_binary":
				for i in range(xs.size()):
					if xs[i] != 0 and xs[i] != 1:
						return [Rlay.INVALID_ACTION, "%s: element %d = %d is not 0 or 1" % [where, i, xs[i]]]
				return [0, xs]
			var nvec: Array = space["nvec"].to_array()
			var st: Array = space["start"].to_array()
			for i in range(xs.size()):
				if xs[i] < st[i] or xs[i] >= st[i] + nvec[i]:
					return [Rlay.INVALID_ACTION, "%s: element %d = %d is outside [%d, %d)" % [where, i, xs[i], st[i], st[i] + nvec[i]]]
			return [0, xs]
		"discrete":
			var dt: String = space["dtype"]
			var a = v
			if typeof(v) == TYPE_OBJECT and v is Rlay.Tensor and v.shape.size() == 0 and v.dtype >= Rlay.DT_INT8 and v.dtype <= Rlay.DT_UINT64:
				a = v.to_array()[0]
				if v.dtype == Rlay.DT_UINT64 and a < 0:
					a = Rlay.U64.new(a)
			if not Rlay.W.is_int(a):
				return [Rlay.BAD_VALUE, "%s: expected an int, got %s" % [where, Rlay.W.describe(v)]]
			if not _int_fits(dt, a):  # §9: a Discrete value outside the dtype's range
				return [Rlay.BAD_VALUE, "%s: %s is outside the %s range" % [where, str(a), dt]]
			if not bounds:
				return [0, a]
			var start = space["start"]
			var n: int = space["n"]
			var inside: bool
			if dt == "uint64":  # unsigned 64-bit, never int64 (§9)
				var off: int = _bits(a) - _bits(start)
				inside = not Rlay.W.u_gt(start, a) and off >= 0 and off < n
			else:
				inside = a >= start and a <= start + n - 1
			if not inside:
				return [Rlay.INVALID_ACTION, "%s: %s is outside [%s, %s + %d)" % [where, str(a), str(start), str(start), n]]
			return [0, a]
		"text":
			if typeof(v) != TYPE_STRING:
				return [Rlay.BAD_VALUE, "%s: expected a str, got %s" % [where, Rlay.W.describe(v)]]
			if not bounds:
				return [0, v]
			if v.length() < space["min_length"] or v.length() > space["max_length"]:
				return [Rlay.INVALID_ACTION, "%s: length %d outside [%d, %d]" % [where, v.length(), space["min_length"], space["max_length"]]]
			for i in range(v.length()):
				if space["charset"].find(v[i]) < 0:
					return [Rlay.INVALID_ACTION, "%s: character %s is not in the charset" % [where, v[i]]]
			return [0, v]
		"dict":
			if typeof(v) != TYPE_DICTIONARY or v.size() != space["spaces"].size():
				return [Rlay.BAD_VALUE, "%s: expected a map with keys %s, got %s" % [where, str(space["spaces"].keys()), Rlay.W.describe(v)]]
			var out := {}
			for k in space["spaces"]:
				if not v.has(k):
					return [Rlay.BAD_VALUE, "%s: missing key %s" % [where, k]]
				var r := from_wire(space["spaces"][k], v[k], "%s[%s]" % [where, k], bounds)
				if r[0] != 0:
					return r
				out[k] = r[1]
			return [0, out]
		"tuple":
			var subs: Array = space["spaces"]
			if typeof(v) != TYPE_ARRAY or v.size() != subs.size():
				return [Rlay.BAD_VALUE, "%s: expected an array of %d values, got %s" % [where, subs.size(), Rlay.W.describe(v)]]
			var out2 := []
			for i in range(subs.size()):
				var r2 := from_wire(subs[i], v[i], "%s[%d]" % [where, i], bounds)
				if r2[0] != 0:
					return r2
				out2.append(r2[1])
			return [0, out2]
		"sequence":
			if typeof(v) != TYPE_ARRAY:
				return [Rlay.BAD_VALUE, "%s: expected an array, got %s" % [where, Rlay.W.describe(v)]]
			var out3 := []
			for i in range(v.size()):
				var r3 := from_wire(space["space"], v[i], "%s[%d]" % [where, i], bounds)
				if r3[0] != 0:
					return r3
				out3.append(r3[1])
			return [0, out3]
		"one_of":
			var subs2: Array = space["spaces"]
			if typeof(v) != TYPE_ARRAY or v.size() != 2 or typeof(v[0]) != TYPE_INT:
				return [Rlay.BAD_VALUE, "%s: expected [index, value], got %s" % [where, Rlay.W.describe(v)]]
			if v[0] < 0 or v[0] >= subs2.size():
				return [Rlay.BAD_VALUE, "%s: index %d outside the %d sub-spaces" % [where, v[0], subs2.size()]]
			var r4 := from_wire(subs2[v[0]], v[1], "%s[%d]" % [where, v[0]], bounds)
			if r4[0] != 0:
				return r4
			return [0, [v[0], r4[1]]]
		"graph":
			var why := _graph_problem(space, v, where)
			if why != "":
				return [Rlay.BAD_VALUE, why]
			if bounds:
				why = _graph_outside(space, v, where)
				if why != "":
					return [Rlay.INVALID_ACTION, why]
			return [0, v]
	return [Rlay.BAD_VALUE, "%s: unknown space kind %s" % [where, kind]]


# ---- graph values (§9): a map of exactly nodes, edges, edge_links ------------------------------

# [dtype, shape] of one node or edge of a graph's (box or discrete) node / edge space.
static func _layout(space: Dictionary) -> Array:
	if space["kind"] == "discrete":
		return [space["dtype"], []]
	return [space["dtype"], space["shape"]]


static func _tail(shape: Array) -> Array:
	var out := []
	for i in range(1, shape.size()):
		out.append(shape[i])
	return out


static func _is_tensor(x) -> bool:
	return typeof(x) == TYPE_OBJECT and x is Rlay.Tensor


# The structure of a graph value; "" or why not (BAD_VALUE). Nodes: (n, *node shape) of the node
# dtype; with an edge space, edges (m, *edge shape) and int64 or int32 edge_links (m, 2), or both
# nil; without one, both nil.
static func _graph_problem(space: Dictionary, v, where: String) -> String:
	if typeof(v) != TYPE_DICTIONARY or v.size() != 3 or not (v.has("nodes") and v.has("edges") and v.has("edge_links")):
		return "%s: expected a map of exactly nodes, edges, edge_links, got %s" % [where, Rlay.W.describe(v) if typeof(v) != TYPE_DICTIONARY else str(v.keys())]
	var nl := _layout(space["node_space"])
	var nodes = v["nodes"]
	if not _is_tensor(nodes) or nodes.dtype_name() != nl[0] or nodes.shape.size() != 1 + nl[1].size() or _tail(nodes.shape) != nl[1]:
		return "%s[nodes]: expected a %s tensor of shape (n, %s), got %s" % [where, nl[0], str(nl[1]), Rlay.W.describe(nodes)]
	var edges = v["edges"]
	var links = v["edge_links"]
	if space["edge_space"] == null:
		if edges != null or links != null:
			return "%s: a graph without an edge space has nil edges and edge_links" % where
		return ""
	if edges == null and links == null:
		return ""
	var el := _layout(space["edge_space"])
	if not _is_tensor(edges) or edges.dtype_name() != el[0] or edges.shape.size() != 1 + el[1].size() or _tail(edges.shape) != el[1]:
		return "%s[edges]: expected a %s tensor of shape (m, %s) (or nil with nil edge_links), got %s" % [where, el[0], str(el[1]), Rlay.W.describe(edges)]
	if not _is_tensor(links) or not links.dtype in [Rlay.DT_INT64, Rlay.DT_INT32] or links.shape != [edges.shape[0], 2]:
		return "%s[edge_links]: expected an int64 or int32 tensor of shape (%d, 2), got %s" % [where, edges.shape[0], Rlay.W.describe(links)]
	return ""


# Gymnasium's Graph.contains: nodes and edges inside their spaces, links between existing nodes.
static func _graph_outside(space: Dictionary, v, where: String) -> String:
	var parts := [["nodes", space["node_space"], v["nodes"]]]
	if v["edges"] != null:
		parts.append(["edges", space["edge_space"], v["edges"]])
	for p in parts:
		var sub: Dictionary = p[1]
		var xs: Array = p[2].to_array()
		if sub["kind"] == "discrete":
			for i in range(xs.size()):
				var x = xs[i]
				if sub["dtype"] == "uint64" and x < 0:
					x = Rlay.U64.new(x)  # to_array gives uint64 elements as their signed bits
				var r := from_wire(sub, x, "%s[%s][%d]" % [where, p[0], i])
				if r[0] != 0:
					return r[1]
		else:
			var lo: Array = sub["low"].to_array()
			var hi: Array = sub["high"].to_array()
			var per := lo.size()
			for i in range(xs.size()):
				if not (xs[i] >= lo[i % per] and xs[i] <= hi[i % per]):
					return "%s[%s]: element %d = %s is outside [%s, %s]" % [where, p[0], i, str(xs[i]), str(lo[i % per]), str(hi[i % per])]
	if v["edge_links"] != null:
		var n: int = v["nodes"].shape[0]
		var ls: Array = v["edge_links"].to_array()
		for i in range(ls.size()):
			if ls[i] < 0 or ls[i] >= n:
				return "%s[edge_links]: element %d = %d is not a node index (the graph has %d nodes)" % [where, i, ls[i], n]
	return ""


# The game's graph observation: tensors, or Arrays (nodes and edges flattened in C order, one
# node / edge after another; edge_links pairs) converted exactly.
static func _graph_to_wire(space: Dictionary, v, where: String) -> Array:
	if typeof(v) != TYPE_DICTIONARY:
		return [false, "%s: expected a Dictionary of nodes, edges, edge_links, got %s" % [where, Rlay.W.describe(v)]]
	var out := {}
	for p in [["nodes", space["node_space"]], ["edges", space["edge_space"]], ["edge_links", null]]:
		var x = v.get(p[0])
		if p[0] != "nodes" and space["edge_space"] == null and x != null:
			return [false, "%s: a graph without an edge space has nil edges and edge_links" % where]
		if typeof(x) in [TYPE_ARRAY, TYPE_REAL_ARRAY, TYPE_INT_ARRAY]:
			var lay: Array = ["int64", [2]] if p[1] == null else _layout(p[1])
			var per := _count(lay[1])
			var flat := _flatten(x)
			if per == 0 or flat.size() % per != 0:
				return [false, "%s[%s]: %d numbers do not make whole items of shape %s" % [where, p[0], flat.size(), str(lay[1])]]
			var why := _exact_all(lay[0], flat, "%s[%s]" % [where, p[0]])
			if why != "":
				return [false, why]
			x = Rlay.tensor(lay[0], [flat.size() / per] + lay[1], flat)
		out[p[0]] = x
	for k in v:
		if not k in ["nodes", "edges", "edge_links"]:
			return [false, "%s: unknown key %s (a graph has nodes, edges, edge_links)" % [where, str(k)]]
	var problem := _graph_problem(space, out, where)
	if problem != "":
		return [false, problem]
	return [true, out]


static func _bits(x) -> int:
	return x.bits if typeof(x) == TYPE_OBJECT else x


# ---- §10 batching: N values of `space` <-> one value of batch_space(space, N) ------------------

# Stacks N wire values (each already made by to_wire).
static func stack(space: Dictionary, values: Array):
	var kind: String = space["kind"]
	match kind:
		"box", "multi_discrete", "multi_binary":
			var first = values[0]
			var data := PoolByteArray()
			for t in values:
				data.append_array(t.data)
			return Rlay.Tensor.new(first.dtype, [values.size()] + first.shape, data)
		"discrete":
			return Rlay.tensor(space["dtype"], [values.size()], values)
		"dict":
			var out := {}
			for k in space["spaces"]:
				var col := []
				for v in values:
					col.append(v[k])
				out[k] = stack(space["spaces"][k], col)
			return out
		"tuple":
			var out2 := []
			var subs: Array = space["spaces"]
			for i in range(subs.size()):
				var col2 := []
				for v in values:
					col2.append(v[i])
				out2.append(stack(subs[i], col2))
			return out2
	return values  # text, sequence, graph, one_of: a tuple of N values


# Splits one batched wire value into N wire values of `space`, or returns a String (why not).
static func unstack(space: Dictionary, v, n: int):
	var kind: String = space["kind"]
	match kind:
		"box", "multi_discrete", "multi_binary", "discrete":
			if not (typeof(v) == TYPE_OBJECT and v is Rlay.Tensor) or v.shape.size() < 1 or v.shape[0] != n:
				return "expected a tensor with a leading dimension of %d, got %s" % [n, Rlay.W.describe(v)]
			var inner: Array = v.shape.slice(1, v.shape.size() - 1) if v.shape.size() > 1 else []
			var per: int = v.data.size() / n
			var out := []
			for i in range(n):
				var bytes := PoolByteArray() if per == 0 else v.data.subarray(i * per, (i + 1) * per - 1)
				var t := Rlay.Tensor.new(v.dtype, inner.duplicate(), bytes)
				if kind != "discrete":
					out.append(t)
				else:
					var x = t.to_array()[0]
					out.append(Rlay.U64.new(x) if v.dtype == Rlay.DT_UINT64 and x < 0 else x)
			return out
		"dict":
			if typeof(v) != TYPE_DICTIONARY:
				return "expected a map, got %s" % Rlay.W.describe(v)
			var cols := {}
			for k in space["spaces"]:
				if not v.has(k):
					return "missing key %s" % k
				var c = unstack(space["spaces"][k], v[k], n)
				if typeof(c) == TYPE_STRING:
					return c
				cols[k] = c
			var out2 := []
			for i in range(n):
				var d := {}
				for k in cols:
					d[k] = cols[k][i]
				out2.append(d)
			return out2
		"tuple":
			var subs: Array = space["spaces"]
			if typeof(v) != TYPE_ARRAY or v.size() != subs.size():
				return "expected an array of %d, got %s" % [subs.size(), Rlay.W.describe(v)]
			var cols2 := []
			for j in range(subs.size()):
				var c2 = unstack(subs[j], v[j], n)
				if typeof(c2) == TYPE_STRING:
					return c2
				cols2.append(c2)
			var out3 := []
			for i in range(n):
				var row := []
				for j in range(subs.size()):
					row.append(cols2[j][i])
				out3.append(row)
			return out3
	if typeof(v) != TYPE_ARRAY or v.size() != n:
		return "expected an array of %d values, got %s" % [n, Rlay.W.describe(v)]
	return v


# Gymnasium's vector info: each key -> N entries, "_key" -> bool tensor (N,) of who set it.
static func stack_infos(infos: Array) -> Dictionary:
	var n := infos.size()
	var keys := []
	for info in infos:
		for k in info:
			if not k in keys:
				keys.append(k)
	var out := {}
	for k in keys:
		var col := []
		var mask := []
		var kind := -1
		for info in infos:
			var has: bool = info.has(k)
			mask.append(has)
			col.append(info[k] if has else null)
			if has:
				var t := typeof(info[k])
				kind = t if kind == -1 or kind == t else -2
		match kind:
			TYPE_BOOL:
				for i in range(n):
					col[i] = col[i] if mask[i] else false
				out[k] = Rlay.tensor("bool", [n], col)
			TYPE_INT:
				for i in range(n):
					col[i] = col[i] if mask[i] else 0
				out[k] = Rlay.tensor("int64", [n], col)
			TYPE_REAL:
				for i in range(n):
					col[i] = col[i] if mask[i] else 0.0
				out[k] = Rlay.tensor("float64", [n], col)
			_:
				out[k] = col
		out["_" + k] = Rlay.tensor("bool", [n], mask)
	return out
