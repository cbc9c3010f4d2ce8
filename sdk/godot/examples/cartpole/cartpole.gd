# CartPole-v1 as an rlay env side in GDScript, bit-identical to Gymnasium's (same float64
# expressions in the same order, float32 observations, the 500-step truncation, seeded resets
# drawing numpy's PCG64 stream). Callback style: the RlayEnv child calls rlay_reset / rlay_step
# (or the *_batch forms with --num-envs N: N sub-envs, next-step autoreset as Gymnasium's vector
# envs do it).
extends Node

const Rlay = preload("res://addons/rlay/rlay.gd")
const Spaces = preload("res://addons/rlay/spaces.gd")
const RlayEnv = preload("res://addons/rlay/rlay_env.gd")
const Pcg64 = preload("res://examples/cartpole/pcg64.gd")

const GRAVITY := 9.8
const MASSCART := 1.0
const MASSPOLE := 0.1
const TOTAL_MASS := MASSPOLE + MASSCART
const LENGTH := 0.5
const POLEMASS_LENGTH := MASSPOLE * LENGTH
const FORCE_MAG := 10.0
const DT := 0.02
const X_THRESHOLD := 2.4
const MAX_STEPS := 500

var theta_threshold := 12 * 2 * PI / 360
var envs := []  # one Dictionary per sub-env: s (4 floats), elapsed, beyond, rng, seeded, done
var env: Node


func _ready() -> void:
	env = RlayEnv.new()
	var hi := [X_THRESHOLD * 2, INF, theta_threshold * 2, INF]
	var lo := []
	for x in hi:
		lo.append(-x)
	env.observation_space = Spaces.box(lo, hi, [4], "float32")
	env.action_space = Spaces.discrete(2)
	env.metadata = {"render_modes": [], "render_fps": 50}
	env.env_name = "CartPole-v1 (rlay-godot)"
	env.handler = self
	add_child(env)  # its _ready reads the command line / launcher variables and connects
	for i in range(env.num_envs):
		envs.append({"s": [0.0, 0.0, 0.0, 0.0], "elapsed": 0, "beyond": -1, "rng": Pcg64.new(),
			"seeded": false, "done": false})
	if env.num_envs > 1:
		env.metadata["autoreset_mode"] = "next_step"


func _reset_one(e: Dictionary, seed_value, low: float, high: float, salt: int) -> void:
	if seed_value != null:
		e.rng.seed(seed_value.bits if typeof(seed_value) == TYPE_OBJECT else seed_value)
	elif not e.seeded:
		e.rng.seed(OS.get_unix_time() ^ (OS.get_ticks_usec() << 20) ^ (salt << 48))
	e.seeded = true
	for k in range(4):
		e.s[k] = low + (high - low) * e.rng.next_double()
	e.elapsed = 0
	e.beyond = -1
	e.done = false


func _step_one(e: Dictionary, action: int) -> Array:
	var x: float = e.s[0]
	var x_dot: float = e.s[1]
	var theta: float = e.s[2]
	var theta_dot: float = e.s[3]
	var force := FORCE_MAG if action == 1 else -FORCE_MAG
	var costheta := cos(theta)
	var sintheta := sin(theta)
	var temp := (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS
	var thetaacc := (GRAVITY * sintheta - costheta * temp) / (LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / TOTAL_MASS))
	var xacc := temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
	x = x + DT * x_dot
	x_dot = x_dot + DT * xacc
	theta = theta + DT * theta_dot
	theta_dot = theta_dot + DT * thetaacc
	e.s = [x, x_dot, theta, theta_dot]
	var terminated := x < -X_THRESHOLD or x > X_THRESHOLD or theta < -theta_threshold or theta > theta_threshold
	var reward := 1.0
	if terminated:
		if e.beyond < 0:
			e.beyond = 0
		else:
			e.beyond += 1
			reward = 0.0
	e.elapsed += 1
	var truncated: bool = e.elapsed >= MAX_STEPS
	e.done = terminated or truncated
	return [reward, terminated, truncated]


func _bounds(options) -> Array:
	var low := -0.05
	var high := 0.05
	if typeof(options) == TYPE_DICTIONARY:
		if options.has("low"):
			low = options["low"] * 1.0
		if options.has("high"):
			high = options["high"] * 1.0
	return [low, high]


# The observation as Gymnasium makes it: np.array(state, dtype=np.float32), the game's own
# rounding of its float64 state (the addon never rounds an observation, spec §9).
func _obs(e: Dictionary) -> Rlay.Tensor:
	return Rlay.tensor("float32", [4], e.s)


# ---- the handler (callback style) --------------------------------------------------------------

func rlay_reset(seed_value, options) -> Array:
	var b := _bounds(options)
	_reset_one(envs[0], seed_value, b[0], b[1], 0)
	return [_obs(envs[0]), {}]


func rlay_step(action: int) -> Array:
	var r := _step_one(envs[0], action)
	return [_obs(envs[0]), r[0], r[1], r[2], {}]


# mask: which sub-envs to reset (§10 reset_mask; options arrive without it). The others keep
# their state; their observation is their last one.
func rlay_reset_batch(seeds: Array, options, mask: Array) -> Array:
	var b := _bounds(options)
	var obs := []
	var infos := []
	for i in range(envs.size()):
		if mask[i]:
			_reset_one(envs[i], seeds[i], b[0], b[1], i)
		obs.append(_obs(envs[i]))
		infos.append({})
	return [obs, infos]


func rlay_step_batch(actions: Array) -> Array:
	var obs := []
	var rewards := []
	var terms := []
	var truncs := []
	var infos := []
	for i in range(envs.size()):
		var e: Dictionary = envs[i]
		if e.done:  # next-step autoreset: this step resets the sub-env that ended last step
			_reset_one(e, null, -0.05, 0.05, i)
			rewards.append(0.0)
			terms.append(false)
			truncs.append(false)
		else:
			var r := _step_one(e, actions[i])
			rewards.append(r[0])
			terms.append(r[1])
			truncs.append(r[2])
		obs.append(_obs(e))
		infos.append({})
	return [obs, rewards, terms, truncs, infos]
