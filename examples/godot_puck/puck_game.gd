# Puck: push a puck (a RigidBody2D simulated by Godot's own 2D physics) onto a target inside a
# walled arena. The agent picks one of five thrusts per step (none, left, right, up, down); each
# step lasts STEP_TICKS physics ticks of the engine. An episode ends when the puck's centre is
# within TARGET_RADIUS of the target (terminated, +10) or after MAX_STEPS steps (truncated).
# Reward per step: how much closer the puck came (pixels / 100), minus a small time cost.
#
# Observation (float32, 8): target - puck and puck velocity (scaled by 1/400), puck position
# and target position (scaled to [-1, 1] over the arena).
#
# rlay, loop style: the game's own _physics_process asks the RlayEnv node for the next command
# and answers a STEP only after the physics has run STEP_TICKS ticks with the chosen thrust.
extends Node2D

const Spaces = preload("res://addons/rlay/spaces.gd")
const Rlay = preload("res://addons/rlay/rlay.gd")

const ARENA := Vector2(800, 600)
const WALL := 20.0
const PUCK_RADIUS := 16.0
const TARGET_RADIUS := 28.0
const THRUST := 600.0
const STEP_TICKS := 4
const MAX_STEPS := 200
const DIRS := [Vector2.ZERO, Vector2.LEFT, Vector2.RIGHT, Vector2.UP, Vector2.DOWN]

onready var env: Node = $RlayEnv  # a Node with addons/rlay/rlay_env.gd attached (main.tscn)
var puck: RigidBody2D
var target := Vector2.ZERO
var rng := RandomNumberGenerator.new()
var ticks_left := 0
var steps := 0
var last_distance := 0.0
var reaches := 0


func _ready() -> void:
	rng.randomize()
	_build_arena()
	env.observation_space = Spaces.box(-4.0, 4.0, [8], "float32")
	env.action_space = Spaces.discrete(5)
	env.metadata = {"render_modes": [], "physics_ticks_per_step": STEP_TICKS}
	env.env_name = "Puck (Godot RigidBody2D)"
	# No handler: loop style (_physics_process below polls). The node connects once every _ready
	# has run: to RLAY_ADDRESS / --connect ADDR if given, else it dials tcp://127.0.0.1:5555.


func _build_arena() -> void:
	puck = RigidBody2D.new()
	puck.gravity_scale = 0.0
	puck.linear_damp = 2.0
	puck.mass = 1.0
	puck.can_sleep = false
	var shape := CollisionShape2D.new()
	var circle := CircleShape2D.new()
	circle.radius = PUCK_RADIUS
	shape.shape = circle
	puck.add_child(shape)
	puck.position = ARENA / 2
	add_child(puck)
	var material := PhysicsMaterial.new()
	material.bounce = 0.5
	puck.physics_material_override = material
	for r in [Rect2(-WALL, -WALL, ARENA.x + 2 * WALL, WALL), Rect2(-WALL, ARENA.y, ARENA.x + 2 * WALL, WALL),
			Rect2(-WALL, 0, WALL, ARENA.y), Rect2(ARENA.x, 0, WALL, ARENA.y)]:
		var wall := StaticBody2D.new()
		var ws := CollisionShape2D.new()
		var rect := RectangleShape2D.new()
		rect.extents = r.size / 2
		ws.shape = rect
		wall.position = r.position + r.size / 2
		wall.add_child(ws)
		add_child(wall)


func _random_point() -> Vector2:
	var m := WALL + PUCK_RADIUS
	return Vector2(rng.randf_range(m, ARENA.x - m), rng.randf_range(m, ARENA.y - m))


func _observe() -> Array:
	var p := puck.position
	var v := puck.linear_velocity
	var d := target - p
	var half := ARENA / 2
	return [d.x / 400.0, d.y / 400.0, v.x / 400.0, v.y / 400.0,
		(p.x - half.x) / half.x, (p.y - half.y) / half.y,
		(target.x - half.x) / half.x, (target.y - half.y) / half.y]


func _physics_process(_delta: float) -> void:
	if ticks_left > 0:  # a STEP in progress: the physics ran one more tick with the thrust
		ticks_left -= 1
		if ticks_left > 0:
			return
		_finish_step()
	var cmd = env.poll()
	if cmd == null:
		return
	match cmd.kind:
		Rlay.RESET:
			_reset(cmd.body["seed"])
		Rlay.STEP:
			puck.applied_force = DIRS[env.command_action] * THRUST
			ticks_left = STEP_TICKS
		Rlay.CALL:
			if cmd.body["name"] == "reaches":
				env.reply_call(reaches)
			else:
				env.reply_error(Rlay.NOT_SUPPORTED, "no CALL named %s" % cmd.body["name"])
		_:
			env.reply_error(Rlay.NOT_SUPPORTED, "Puck has no render()")


func _reset(seed_value) -> void:
	if seed_value != null:
		rng.seed = seed_value.bits if typeof(seed_value) == TYPE_OBJECT else seed_value
	var start := _random_point()
	target = _random_point()
	while start.distance_to(target) < 150:
		target = _random_point()
	# Teleport the body now (setting `position` on a RigidBody2D waits for the physics).
	var rid := puck.get_rid()
	Physics2DServer.body_set_state(rid, Physics2DServer.BODY_STATE_TRANSFORM, Transform2D(0, start))
	Physics2DServer.body_set_state(rid, Physics2DServer.BODY_STATE_LINEAR_VELOCITY, Vector2.ZERO)
	puck.position = start
	puck.linear_velocity = Vector2.ZERO
	puck.applied_force = Vector2.ZERO
	steps = 0
	last_distance = start.distance_to(target)
	env.reply_reset(_observe(), {"distance": last_distance})


func _finish_step() -> void:
	puck.applied_force = Vector2.ZERO
	steps += 1
	var dist := puck.position.distance_to(target)
	var reward := (last_distance - dist) / 100.0 - 0.01
	last_distance = dist
	var reached := dist < TARGET_RADIUS
	if reached:
		reward += 10.0
		reaches += 1
	env.reply_step(_observe(), reward, reached, steps >= MAX_STEPS and not reached, {"distance": dist})
