# An env whose observation is the action it was given, with every space kind the addon converts
# (box, discrete, multi_discrete, multi_binary, text, dict, tuple, sequence, one_of, graph): the tests send actions from
# Python and check that each comes back unchanged, through from_wire, to_wire and (with
# --num-envs N) the §10 batching. CALL "fail" answers an EnvError; RESET with the option
# "script_error" hits a GDScript runtime error (an ENV_EXCEPTION reply; the session goes on);
# RESET with the option "patch" (a map) puts the given values into the observation.
extends Node

const Rlay = preload("res://addons/rlay/rlay.gd")
const Spaces = preload("res://addons/rlay/spaces.gd")
const RlayEnv = preload("res://addons/rlay/rlay_env.gd")

var env: Node
var last := []


func _ready() -> void:
	env = RlayEnv.new()
	var space := Spaces.dict({
		"box": Spaces.box([-1.0, -2.0, 0.0, -INF], [1.0, 2.0, 5.0, INF], [2, 2], "float32"),
		"grid": Spaces.box(0, 255, [3], "uint8"),
		"discrete": Spaces.discrete(4, -1),
		"multi_discrete": Spaces.multi_discrete([3, 5]),
		"multi_binary": Spaces.multi_binary(3),
		"text": Spaces.text(6, 1, "abc"),
		"tuple": Spaces.tuple([Spaces.discrete(2), Spaces.box(-1.0, 1.0, [2], "float64")]),
		"sequence": Spaces.sequence(Spaces.discrete(3)),
		"one_of": Spaces.one_of([Spaces.discrete(2), Spaces.box(-1.0, 1.0, [2], "float32")]),
		"graph": Spaces.graph(Spaces.box(-1.0, 1.0, [2], "float32"), Spaces.discrete(3)),
		"graph_nodes": Spaces.graph(Spaces.discrete(4)),
		"big": Spaces.discrete(2, Rlay.U64.new(-2), "uint64"),  # 2^64 - 2 and 2^64 - 1 (§9)
		"big_box": Spaces.box(0, Rlay.U64.new(-1), [2], "uint64"),  # 0 ... 2^64 - 1
	})
	env.observation_space = space
	env.action_space = space
	env.handler = self
	add_child(env)


func rlay_reset(_seed, options) -> Array:
	if typeof(options) == TYPE_DICTIONARY and options.has("script_error"):
		var nothing = null
		nothing.crash()  # a runtime error: this function aborts and returns null
	var obs := _zero()
	if typeof(options) == TYPE_DICTIONARY and options.has("patch"):
		for k in options["patch"]:  # the test's own values for some keys (exact-observation checks)
			obs[k] = options["patch"][k]
	return [obs, {}]


func _zero() -> Dictionary:
	return {"box": [0.0, 0.0, 0.0, 0.0], "grid": [0, 0, 0], "discrete": 0, "multi_discrete": [0, 0],
		"multi_binary": [0, 1, 0], "text": "a", "tuple": [1, [0.5, -0.5]], "sequence": [2, 0],
		"one_of": [1, [0.25, 0.5]], "graph": {"nodes": [[0.5, -0.5]], "edges": [], "edge_links": []},
		"graph_nodes": {"nodes": [1, 3], "edges": null, "edge_links": null}, "big": Rlay.U64.new(-1),
		"big_box": [0, Rlay.U64.new(-1)]}


func rlay_step(action) -> Array:
	return [action, 0.0, false, false, {"echo": true}]


func rlay_reset_batch(seeds: Array, _options, _mask: Array) -> Array:
	var obs := []
	var infos := []
	for _i in seeds:
		obs.append(_zero())
		infos.append({})
	return [obs, infos]


func rlay_step_batch(actions: Array) -> Array:
	var rewards := []
	var flags := []
	var infos := []
	for i in range(actions.size()):
		rewards.append(float(i))
		flags.append(false)
		infos.append({"index": i})
	return [actions, rewards, flags, flags, infos]


func rlay_call(name: String, args: Array, _kwargs: Dictionary):
	if name == "fail":
		return RlayEnv.error("ValueError", "asked to fail")
	return args
