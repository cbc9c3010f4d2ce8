# Puck: push a puck (a RigidBody2D simulated by Godot's own 2D physics) onto a target inside a
# walled arena. The agent picks one of five thrusts per step (none, left, right, up, down); each
# step lasts STEP_TICKS physics ticks of the engine. An episode ends when the puck's centre is
# within TARGET_RADIUS of the target (terminated, +10) or after MAX_STEPS steps (truncated).
# Reward per step: how much closer the puck came (pixels / 100), minus a small time cost.
#
# Observation (float32, 8): target - puck and puck velocity (scaled by 1/400), puck position
# and target position (scaled to [-1, 1] over the arena).
#
# With `-- --num-envs N` the scene holds N arenas side by side, one puck each, all simulated by
# the same physics ticks: N sub-envs on one connection (spec §10), with next-step autoreset.
#
# rlay, loop style: the game's own _physics_process asks the RlayEnv node for the next command
# and answers a STEP only after the physics has run STEP_TICKS ticks with the chosen thrusts.
# Between steps the physics is switched off (Physics2DServer.set_active): the engine keeps
# ticking while Python thinks, and a coasting puck would otherwise move a number of ticks that
# depends on Python's latency; frozen, the same seed and actions give the same episode.
extends Node2D

const Spaces = preload("res://addons/rlay/spaces.gd")
const Rlay = preload("res://addons/rlay/rlay.gd")

const ARENA := Vector2(800, 600)
const WALL := 20.0
const GAP := 100.0  # between arenas
const PUCK_RADIUS := 16.0
const TARGET_RADIUS := 28.0
const THRUST := 600.0
const STEP_TICKS := 4
const MAX_STEPS := 200
const DIRS := [Vector2.ZERO, Vector2.LEFT, Vector2.RIGHT, Vector2.UP, Vector2.DOWN]

onready var env: Node = $RlayEnv  # a Node with addons/rlay/rlay_env.gd attached (main.tscn)
var arenas := []  # one Dictionary per sub-env: puck, origin, target, rng, steps, last, done
var ticks_left := 0


func _ready() -> void:
	# env.num_envs is known here: the node read --num-envs in its own _ready (children first).
	for i in range(env.num_envs):
		arenas.append(_build_arena(Vector2(i * (ARENA.x + 2 * WALL + GAP), 0)))
	env.observation_space = Spaces.box(-4.0, 4.0, [8], "float32")
	env.action_space = Spaces.discrete(5)
	env.metadata = {"render_modes": [], "physics_ticks_per_step": STEP_TICKS}
	if env.num_envs > 1:
		env.metadata["autoreset_mode"] = "next_step"
	env.env_name = "Puck (Godot RigidBody2D)"
	Physics2DServer.set_active(false)  # on only during a STEP's ticks
	# No handler: loop style (_physics_process below polls). The node connects once every _ready
	# has run: --listen / --connect ADDR if given, else RLAY_ADDRESS with RLAY_MODE (listen or dial,
	# unset: listen; spec §15), else it dials tcp://127.0.0.1:5555 (Play in the editor). A launched
	# game serves one session and exits: 0 after CLOSE or end of stream in idle, 1 on an error.


func _build_arena(origin: Vector2) -> Dictionary:
	var puck := RigidBody2D.new()
	puck.gravity_scale = 0.0
	puck.linear_damp = 2.0
	puck.mass = 1.0
	puck.can_sleep = false
	var shape := CollisionShape2D.new()
	var circle := CircleShape2D.new()
	circle.radius = PUCK_RADIUS
	shape.shape = circle
	puck.add_child(shape)
	puck.position = origin + ARENA / 2
	var material := PhysicsMaterial.new()
	material.bounce = 0.5
	puck.physics_material_override = material
	add_child(puck)
	for r in [Rect2(-WALL, -WALL, ARENA.x + 2 * WALL, WALL), Rect2(-WALL, ARENA.y, ARENA.x + 2 * WALL, WALL),
			Rect2(-WALL, 0, WALL, ARENA.y), Rect2(ARENA.x, 0, WALL, ARENA.y)]:
		var wall := StaticBody2D.new()
		var ws := CollisionShape2D.new()
		var rect := RectangleShape2D.new()
		rect.extents = r.size / 2
		ws.shape = rect
		wall.position = origin + r.position + r.size / 2
		wall.add_child(ws)
		add_child(wall)
	var rng := RandomNumberGenerator.new()
	rng.randomize()
	return {"puck": puck, "origin": origin, "target": origin + ARENA / 2, "rng": rng, "steps": 0,
		"last": 0.0, "done": false, "reaches": 0}


func _random_point(a: Dictionary) -> Vector2:
	var m := WALL + PUCK_RADIUS
	return a.origin + Vector2(a.rng.randf_range(m, ARENA.x - m), a.rng.randf_range(m, ARENA.y - m))


# The observation, rounded to float32 here by the game itself (GDScript computes in float64; the
# addon never rounds an observation, spec §9).
func _observe(a: Dictionary) -> Rlay.Tensor:
	var p: Vector2 = a.puck.position - a.origin
	var t: Vector2 = a.target - a.origin
	var v: Vector2 = a.puck.linear_velocity
	var d := t - p
	var half := ARENA / 2
	return Rlay.tensor("float32", [8], [d.x / 400.0, d.y / 400.0, v.x / 400.0, v.y / 400.0,
		(p.x - half.x) / half.x, (p.y - half.y) / half.y,
		(t.x - half.x) / half.x, (t.y - half.y) / half.y])


func _physics_process(_delta: float) -> void:
	if ticks_left > 0:  # a STEP in progress: the physics ran one more tick with the thrusts
		ticks_left -= 1
		if ticks_left > 0:
			return
		_finish_step()
	var cmd = env.poll()
	if cmd == null:
		return
	match cmd.kind:
		Rlay.RESET:
			_reset(cmd)
		Rlay.STEP:
			var actions: Array = env.command_action if env.num_envs > 1 else [env.command_action]
			for i in range(arenas.size()):
				var a: Dictionary = arenas[i]
				a.puck.applied_force = Vector2.ZERO if a.done else DIRS[actions[i]] * THRUST
			ticks_left = STEP_TICKS
			Physics2DServer.set_active(true)  # the physics steps after each _physics_process
		Rlay.CALL:
			if cmd.body["name"] == "reaches":
				var counts := []  # §10: a CALL answers one value per sub-env
				for a in arenas:
					counts.append(a.reaches)
				env.reply_call(counts[0] if env.num_envs == 1 else counts)
			else:
				env.reply_error(Rlay.NOT_SUPPORTED, "no CALL named %s" % cmd.body["name"])
		_:
			env.reply_error(Rlay.NOT_SUPPORTED, "Puck has no render()")


func _reset_one(a: Dictionary, seed_value) -> void:
	if seed_value != null:
		a.rng.seed = seed_value.bits if typeof(seed_value) == TYPE_OBJECT else seed_value
	var start := _random_point(a)
	a.target = _random_point(a)
	while start.distance_to(a.target) < 150:
		a.target = _random_point(a)
	# Teleport the body now (setting `position` on a RigidBody2D waits for the physics).
	var rid: RID = a.puck.get_rid()
	Physics2DServer.body_set_state(rid, Physics2DServer.BODY_STATE_TRANSFORM, Transform2D(0, start))
	Physics2DServer.body_set_state(rid, Physics2DServer.BODY_STATE_LINEAR_VELOCITY, Vector2.ZERO)
	Physics2DServer.body_set_state(rid, Physics2DServer.BODY_STATE_ANGULAR_VELOCITY, 0.0)
	a.puck.position = start
	a.puck.rotation = 0.0
	a.puck.linear_velocity = Vector2.ZERO
	a.puck.angular_velocity = 0.0
	a.puck.applied_force = Vector2.ZERO
	a.steps = 0
	a.last = start.distance_to(a.target)
	a.done = false


func _reset(cmd) -> void:
	var seeds: Array = env.seeds_of(cmd)
	var mask: Array = env.reset_mask_of(cmd)  # §10: the sub-envs to reset (all without a mask)
	var obs := []
	var infos := []
	for i in range(arenas.size()):
		if mask[i]:
			_reset_one(arenas[i], seeds[i])
		obs.append(_observe(arenas[i]))
		infos.append({"distance": arenas[i].last})
	if env.num_envs == 1:
		env.reply_reset(obs[0], infos[0])
	else:
		env.reply_reset_batch(obs, infos)


func _finish_step() -> void:
	Physics2DServer.set_active(false)
	var obs := []
	var rewards := []
	var terms := []
	var truncs := []
	var infos := []
	for a in arenas:
		a.puck.applied_force = Vector2.ZERO
		if a.done and env.num_envs > 1:  # next-step autoreset: this step starts its new episode
			_reset_one(a, null)
			obs.append(_observe(a))
			rewards.append(0.0)
			terms.append(false)
			truncs.append(false)
			infos.append({"distance": a.last})
			continue
		a.steps += 1
		var dist: float = a.puck.position.distance_to(a.target)
		var reward: float = (a.last - dist) / 100.0 - 0.01
		a.last = dist
		var reached := dist < TARGET_RADIUS
		if reached:
			reward += 10.0
			a.reaches += 1
		var truncated: bool = a.steps >= MAX_STEPS and not reached
		a.done = reached or truncated
		obs.append(_observe(a))
		rewards.append(reward)
		terms.append(reached)
		truncs.append(truncated)
		infos.append({"distance": dist})
	if env.num_envs == 1:
		env.reply_step(obs[0], rewards[0], terms[0], truncs[0], infos[0])
	else:
		env.reply_step_batch(obs, rewards, terms, truncs, infos)
