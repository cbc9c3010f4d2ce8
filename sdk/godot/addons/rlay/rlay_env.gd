# RlayEnv: the node that makes a Godot scene an rlay env side (spec/protocol.md).
#
# Attach it (or `add_child(RlayEnv.new())`), set the spaces, and press Play: it dials the Python
# `rlay.ServerEnv` (or listens for `rlay.ClientEnv`) and answers its commands from
# _physics_process, never blocking a frame (sockets are polled; a write of a reply is the only
# wait, a few microseconds on loopback).
#
#     const RlayEnv = preload("res://addons/rlay/rlay_env.gd")
#     const Spaces = preload("res://addons/rlay/spaces.gd")
#     var env = RlayEnv.new()
#     env.observation_space = Spaces.box(-INF, INF, [4], "float32")
#     env.action_space = Spaces.discrete(2)
#
# Two styles:
# - callback: `env.handler = self`; the node calls `rlay_reset(seed, options)` -> [obs, info] and
#   `rlay_step(action)` -> [obs, reward, terminated, truncated, info] (optional: `rlay_render()`
#   -> frame, `rlay_call(name, args, kwargs)` -> value) and answers at once. With num_envs > 1:
#   `rlay_reset_batch(seeds, options, mask)` -> [obs_list, info_list] (mask: an Array of bool,
#   the sub-envs to reset, from §10's reset_mask, which `options` no longer holds; seeds[i] is
#   null for a sub-env left out) and `rlay_step_batch(actions)` -> [obs_list, rewards,
#   terminateds, truncateds, info_list], one entry per sub-env.
# - loop: no handler; the game calls `poll()` from its own _physics_process; it returns the next
#   command (Rlay.Message: .kind is Rlay.RESET / STEP / RENDER / CALL; .body holds seed, options,
#   action, ...; `command_action` the action already converted) or null, and the game answers
#   when it is ready, frames later if it likes, with reply_reset / reply_step / reply_render /
#   reply_call / reply_error (or the *_batch forms). For a batched RESET, seeds_of(cmd),
#   reset_mask_of(cmd) and reset_options_of(cmd) give what each sub-env's reset receives.
#
# Observations are never rounded (spec §9): a value converts to the space's dtype only when every
# element survives exactly (a float32 Box takes float32 values; GDScript floats are float64, so a
# game that computes in float64 rounds itself: Rlay.tensor("float32", shape, values), as
# Gymnasium's envs do with np.array(state, dtype=np.float32)). Anything else is answered with a
# non-fatal ENV_EXCEPTION naming the element, and the session goes on.
#
# Errors: GDScript has no exceptions. A runtime error in a handler aborts that function, which then
# returns null: the node answers ENV_EXCEPTION (remote_type "ScriptError", the engine printed the
# error on stderr) and the session goes on. A handler may also return `RlayEnv.error(type, msg)`.
#
# Where to connect: `address` ("tcp://HOST:PORT") and `mode` ("listen" / "dial"); left empty, the
# command line (`-- --listen ADDR`, `-- --connect ADDR`, `--num-envs N`) and then the launcher's
# variables (RLAY_ADDRESS, RLAY_MODE; unset mode = listen) decide; with nothing at all it dials
# tcp://127.0.0.1:5555 (press Play in the editor with `rlay.ServerEnv("tcp://127.0.0.1:5555")`
# waiting). Godot 3 has no unix sockets: tcp only.
extends Node

const Rlay = preload("res://addons/rlay/rlay.gd")
const Spaces = preload("res://addons/rlay/spaces.gd")

signal session_started
signal session_ended(ok, why)

export var address := ""
export(String, "", "listen", "dial") var mode := ""
export var num_envs := 1
export var env_name := ""
# A launched program serves one session and exits when it ends (exit 0 after CLOSE or end of
# stream, 1 with a message on stderr after an error).
export var quit_when_done := true
export var default_address := "tcp://127.0.0.1:5555"

var observation_space: Dictionary = {}
var action_space: Dictionary = {}
var metadata := {}
var render_mode = null
var handler: Object = null
# §13 limits on what the agent side sends (raise them if you must; lower max_frame_size for a
# game that only gets small frames).
var max_frame_size := Rlay.DEFAULT_MAX_FRAME_SIZE
var max_handshake_frame_size := Rlay.DEFAULT_MAX_HANDSHAKE_FRAME_SIZE
var max_values := Rlay.DEFAULT_MAX_VALUES

var conn = null  # Rlay.Connection
var command = null  # the outstanding command (Rlay.Message), if any
var command_action = null  # its action, converted for the game (one per sub-env when batched)
var _pending := []
var _server: TCP_Server = null
var _peer: StreamPeerTCP = null
var _dialing := false
var _reset_seen := []  # per sub-env: reset at least once (STEP is RESET_NEEDED until all were)
var _command_mask = null  # the outstanding batched RESET's reset_mask (Array of bool), or null
var _ended := false
var _started := false
var _mode_from := "mode"  # where `mode` came from, for the message of a bad value
var _configured := false


class EnvError:
	var type_name: String
	var message: String
	var fatal: bool

	func _init(t: String, m: String, f: bool = false):
		type_name = t
		message = m
		fatal = f


# Return this from a handler to answer ENV_EXCEPTION with your own type name and message.
static func error(type_name: String, message: String, fatal: bool = false) -> EnvError:
	return EnvError.new(type_name, message, fatal)


func _ready() -> void:
	if not _configured:
		configure()
	# Deferred: a child's _ready runs before its parent's, and the parent (the game) sets the
	# spaces and the handler in its own _ready. Deferred calls run once every _ready has.
	call_deferred("_auto_start")


func _auto_start() -> void:
	if not _started:
		var why := start()
		if why != "":
			_end(false, why)


# Decide the address, mode and num_envs: exported values, then `--listen/--connect/--num-envs`
# after `--` on the command line, then RLAY_ADDRESS / RLAY_MODE. Done in _ready, so that the game's
# own _ready (which runs after its children's) can read num_envs.
func configure() -> void:
	_configured = true
	_mode_from = "mode"
	var args := OS.get_cmdline_args()
	var i := 0
	while i < args.size():
		var a: String = args[i]
		if (a == "--listen" or a == "--connect") and i + 1 < args.size():
			if address == "":
				address = args[i + 1]
				mode = "listen" if a == "--listen" else "dial"
			i += 1
		elif a == "--num-envs" and i + 1 < args.size():
			num_envs = int(args[i + 1])
			i += 1
		i += 1
	if address == "":
		address = OS.get_environment("RLAY_ADDRESS")
		if mode == "":
			mode = OS.get_environment("RLAY_MODE")  # §15: unset or empty: listen
			_mode_from = "RLAY_MODE"
		if address != "" and mode == "":
			mode = "listen"
	if address == "":
		address = default_address
		if mode == "":
			mode = "dial"
	if mode == "":
		mode = "listen"


# Listen or dial (configure() first if not done). Returns "" or why it cannot.
func start() -> String:
	_started = true
	if not _configured:
		configure()
	if num_envs < 1:
		return "num_envs must be >= 1, got %d" % num_envs
	if observation_space.empty() or action_space.empty():
		return "set observation_space and action_space (in the game's _ready at the latest) before the node connects"
	for f in [["observation_space", observation_space], ["action_space", action_space]]:
		var bad: Array = Rlay.W.check_space(f[1], f[0])
		if bad.size() > 0:
			return "invalid %s (%s): %s" % [f[0], Rlay.ERROR_NAMES[bad[0]], bad[1]]
	_reset_seen = []
	for _i in range(num_envs):
		_reset_seen.append(false)
	var hp := _parse(address)
	if hp.size() == 0:
		return "cannot use the address %s: the Godot addon speaks tcp://HOST:PORT only (Godot 3 has no unix sockets)" % address
	if mode == "listen":
		return _listen(hp[0], hp[1])
	if mode == "dial":
		_peer = StreamPeerTCP.new()
		var err := _peer.connect_to_host(hp[0], hp[1])
		if err != OK:
			return "cannot dial %s (error %d)" % [address, err]
		_dialing = true
		return ""
	return "%s must be listen or dial, got '%s'" % [_mode_from, mode]


static func _parse(addr: String) -> Array:
	if not addr.begins_with("tcp://"):
		return []
	var rest := addr.substr(6, addr.length() - 6)
	var colon := rest.find_last(":")
	if colon < 0:
		return []
	var host := rest.substr(0, colon).lstrip("[").rstrip("]")
	var port := rest.substr(colon + 1, rest.length() - colon - 1)
	if not port.is_valid_integer():
		return []
	return [host, int(port)]


func _listen(host: String, port: int) -> String:
	_server = TCP_Server.new()
	if port != 0:
		var err := _server.listen(port, host)
		if err != OK:
			return "cannot listen at %s (error %d)" % [address, err]
	else:
		# Godot 3.2's TCP_Server cannot say which port the OS chose for port 0: try free ports
		# of the ephemeral range at random until one binds.
		var rng := RandomNumberGenerator.new()
		rng.randomize()
		var ok := false
		for _attempt in range(200):
			port = rng.randi_range(20000, 59999)
			if _server.listen(port, host) == OK:
				ok = true
				break
		if not ok:
			return "no free port found to listen at %s" % address
	address = "tcp://%s:%d" % [host if host.find(":") < 0 else "[" + host + "]", port]
	print("RLAY_LISTENING " + address)  # spec §15: the readiness line (print flushes stdout)
	return ""


func _physics_process(_delta: float) -> void:
	pump()


# Moves bytes, runs the handshake and, with a handler, answers commands. Called every physics
# frame by the node itself; a game may call it more often.
func pump() -> void:
	if _ended:
		return
	if conn == null:
		if _server != null and _server.is_connection_available():
			_peer = _server.take_connection()
			_server.stop()
			_begin()
		elif _dialing:
			var st := _peer.get_status()
			if st == StreamPeerTCP.STATUS_CONNECTED:
				_dialing = false
				_begin()
			elif st == StreamPeerTCP.STATUS_ERROR or st == StreamPeerTCP.STATUS_NONE:
				_end(false, "cannot connect to %s (is rlay.ServerEnv listening there?)" % address)
				return
		if conn == null:
			return
	_read()
	while not _ended:
		var m = conn.next_event()
		if m == null:
			break
		_on_message(m)
	_flush()
	if _ended:
		return
	if conn.err != 0:
		_end(false, "%s: %s" % [Rlay.ERROR_NAMES.get(conn.err, str(conn.err)), conn.err_msg])
	elif conn.state == "closed":
		_end(true, "the session is closed")
	elif conn.eof and conn.reader.rx.size() == 0:
		if conn.state == "idle":
			_end(true, "the agent side ended the session (end of stream)")
		elif conn.state in ["hello", "describe"]:
			_end(false, "connection closed by peer during the handshake")
		else:
			_end(false, "connection closed by peer while answering %s" % conn.state.to_upper())
	elif handler != null and command == null and _pending.size() > 0:
		_dispatch()


func _begin() -> void:
	_peer.set_no_delay(true)
	conn = Rlay.Connection.new("env")
	conn.reader.max_frame_size = max_frame_size
	conn.reader.max_first_frame_size = max_handshake_frame_size
	conn.max_values = max_values
	_flush()
	emit_signal("session_started")


func _read() -> void:
	if _peer.get_status() != StreamPeerTCP.STATUS_CONNECTED:
		conn.receive_eof()
		return
	var n := _peer.get_available_bytes()
	if n > 0:
		var got := _peer.get_data(n)
		if got[0] == OK:
			conn.receive_data(got[1])
		else:
			conn.receive_eof()
	else:
		# A closed peer reads as 0 available bytes: a non-blocking partial read tells them apart.
		var probe := _peer.get_partial_data(1)
		if probe[0] != OK:
			conn.receive_eof()
		elif probe[1].size() > 0:
			conn.receive_data(probe[1])
		if _peer.get_status() != StreamPeerTCP.STATUS_CONNECTED:
			conn.receive_eof()


func _flush() -> void:
	if conn == null or _peer == null:
		return
	var out: PoolByteArray = conn.take_output()
	if out.size() > 0 and _peer.get_status() == StreamPeerTCP.STATUS_CONNECTED:
		_peer.put_data(out)


func _on_message(m) -> void:
	match m.kind:
		Rlay.HELLO:
			var info := {"observation_space": observation_space, "action_space": action_space,
				"num_envs": num_envs, "metadata": metadata, "render_mode": render_mode,
				"name": env_name if env_name != "" else null}
			var why: String = conn.send(Rlay.ENV_INFO, info)
			if why != "":
				_end(false, "cannot send ENV_INFO: " + why)
		Rlay.ERROR:  # a fatal ERROR from the agent side: the session is over
			_end(false, "the agent side sent a fatal ERROR: %s: %s" % [
				Rlay.ERROR_NAMES.get(m.body["code"], str(m.body["code"])), str(m.body["message"])])
		Rlay.CLOSE:
			if handler != null and handler.has_method("rlay_close"):
				handler.rlay_close()
			conn.send(Rlay.CLOSE_RESULT, {})
		_:
			_pending.append(m)


# Loop style: the next command, or null. Call reply_* for it before asking for the next one.
func poll():
	pump()
	return _next_command()


func _next_command():
	if command != null or _pending.size() == 0:
		return null
	var m = _pending.pop_front()
	command = m
	command_action = null
	_command_mask = null
	if m.kind == Rlay.STEP:
		# §8's order on a STEP: the action's structure (BAD_VALUE, fatal), then RESET_NEEDED,
		# then its bounds (INVALID_ACTION, naming the first sub-env whose action is outside).
		var st := _action_of(m.body["action"], false)
		if st[0] != 0:
			_answer_error(st[0], st[1], true, null)
			return null
		var missing := _reset_seen.find(false)
		if missing >= 0:
			var why := "STEP before the first RESET"
			if num_envs > 1:
				why = "STEP before every sub-env was reset once (sub-env %d was not)" % missing
			_answer_error(Rlay.RESET_NEEDED, why, false, null)
			return _next_command()
		var r := _action_of(m.body["action"], true)
		if r[0] != 0:
			_answer_error(r[0], r[1], false, null)
			return _next_command()
		command_action = r[1]
	elif m.kind == Rlay.RESET:
		var mask := reset_mask_of(m)
		for i in range(num_envs):
			if mask[i]:
				_reset_seen[i] = true
		if num_envs > 1 and typeof(m.body["options"]) == TYPE_DICTIONARY and m.body["options"].get("reset_mask") != null:
			_command_mask = mask
	return m


func _action_of(v, bounds: bool) -> Array:
	if num_envs == 1:
		return Spaces.from_wire(action_space, v, "action", bounds)
	var parts = Spaces.unstack(action_space, v, num_envs)
	if typeof(parts) == TYPE_STRING:
		return [Rlay.BAD_VALUE, "action: " + parts]
	var out := []
	for i in range(num_envs):
		var r := Spaces.from_wire(action_space, parts[i], "action[%d]" % i, bounds)
		if r[0] != 0:
			return r
		out.append(r[1])
	return [0, out]


# §10: which sub-envs a RESET resets (its options' reset_mask; absent or nil: all). With one env
# reset_mask is an ordinary option and every entry is true.
func reset_mask_of(m) -> Array:
	var out := []
	var options = m.body["options"]
	var mask = options.get("reset_mask") if num_envs > 1 and typeof(options) == TYPE_DICTIONARY else null
	var flags = mask.to_array() if mask != null else null  # a bool tensor (N,): checked on receipt
	for i in range(num_envs):
		out.append(flags == null or flags[i])
	return out


# §10: a batched RESET's options as each sub-env's reset receives them: without reset_mask.
func reset_options_of(m):
	var options = m.body["options"]
	if num_envs == 1 or typeof(options) != TYPE_DICTIONARY or not options.has("reset_mask"):
		return options
	var out: Dictionary = options.duplicate()
	out.erase("reset_mask")
	return out


# The seeds of a RESET for each sub-env (§10: nil, an int (sub-env i gets seed + i), or an array;
# nil for a sub-env its reset_mask leaves out).
func seeds_of(m) -> Array:
	var s = m.body["seed"]
	var mask := reset_mask_of(m)
	var out := []
	for i in range(num_envs):
		if not mask[i]:
			out.append(null)
		elif typeof(s) == TYPE_ARRAY:
			out.append(s[i] if i < s.size() else null)
		elif s == null:
			out.append(null)
		elif typeof(s) == TYPE_OBJECT:
			out.append(Rlay.U64.new(s.bits + i))
		else:
			out.append(s + i)
	return out


func _dispatch() -> void:
	var m = _next_command()
	if m == null:
		return
	var r = null
	var what := ""
	match m.kind:
		Rlay.RESET:
			what = "rlay_reset"
			if num_envs == 1:
				r = handler.call(what, m.body["seed"], m.body["options"])
			else:
				what = "rlay_reset_batch"
				r = handler.call(what, seeds_of(m), reset_options_of(m), reset_mask_of(m))
			if _check_result(r, 2, what):
				if num_envs == 1:
					reply_reset(r[0], r[1])
				else:
					reply_reset_batch(r[0], r[1])
		Rlay.STEP:
			what = "rlay_step" if num_envs == 1 else "rlay_step_batch"
			r = handler.call(what, command_action)
			if _check_result(r, 5, what):
				if num_envs == 1:
					reply_step(r[0], r[1], r[2], r[3], r[4])
				else:
					reply_step_batch(r[0], r[1], r[2], r[3], r[4])
		Rlay.RENDER:
			if not handler.has_method("rlay_render"):
				reply_error(Rlay.NOT_SUPPORTED, "this env has no render()")
			else:
				reply_render(handler.call("rlay_render"))
		Rlay.CALL:
			if not handler.has_method("rlay_call"):
				reply_error(Rlay.NOT_SUPPORTED, "this env registered no CALL names (%s)" % m.body["name"])
			else:
				var v = handler.call("rlay_call", m.body["name"], m.body["args"], m.body["kwargs"])
				if typeof(v) == TYPE_OBJECT and v is EnvError:
					_check_result(v, 0, "rlay_call")
				else:
					reply_call(v)


func _check_result(r, n: int, what: String) -> bool:
	if typeof(r) == TYPE_OBJECT and r is EnvError:
		_answer_error(Rlay.ENV_EXCEPTION, r.message, r.fatal, r.type_name)
		return false
	if typeof(r) != TYPE_ARRAY or r.size() != n:
		var why := "%s returned %s, expected an Array of %d values" % [what, Rlay.W.describe(r), n]
		if r == null:
			why = "%s failed: a GDScript runtime error aborted it (its text is on the engine's stderr)" % what
		_answer_error(Rlay.ENV_EXCEPTION, why, false, "ScriptError")
		return false
	return true


func _answer_error(code: int, message: String, fatal: bool, remote_type) -> void:
	var tb = null
	if remote_type != null:
		tb = ""  # GDScript gives no stack trace outside the debugger (§6: "" then)
	conn.send(Rlay.ERROR, {"code": code, "message": message, "fatal": fatal,
		"remote_type": remote_type, "traceback": tb})
	command = null
	command_action = null
	_flush()
	if fatal:
		_end(false, "%s: %s" % [Rlay.ERROR_NAMES.get(code, str(code)), message])


# ---- replies (loop style) ----------------------------------------------------------------------

func reply_reset(obs, info: Dictionary = {}) -> void:
	var o := Spaces.to_wire(observation_space, obs)
	if not o[0]:
		_bad_reply(o[1])
		return
	_reply(Rlay.RESET_RESULT, {"obs": o[1], "info": info})


func reply_step(obs, reward: float, terminated: bool, truncated: bool, info: Dictionary = {}) -> void:
	var o := Spaces.to_wire(observation_space, obs)
	if not o[0]:
		_bad_reply(o[1])
		return
	_reply(Rlay.STEP_RESULT, {"obs": o[1], "reward": reward * 1.0, "terminated": terminated,
		"truncated": truncated, "info": info})


func reply_reset_batch(obs_list: Array, infos: Array) -> void:
	var obs = _stack_obs(obs_list)
	if typeof(obs) == TYPE_STRING:
		_bad_reply(obs)
		return
	if infos.size() != num_envs:
		_bad_reply("reset_batch: infos needs %d entries, got %d" % [num_envs, infos.size()])
		return
	if _command_mask != null:  # §10: a sub-env the reset_mask left out has its info entries unset
		infos = infos.duplicate()
		for i in range(num_envs):
			if not _command_mask[i]:
				infos[i] = {}
	_reply(Rlay.RESET_RESULT, {"obs": obs, "info": Spaces.stack_infos(infos)})


func reply_step_batch(obs_list: Array, rewards: Array, terminateds: Array, truncateds: Array, infos: Array) -> void:
	var obs = _stack_obs(obs_list)
	if typeof(obs) == TYPE_STRING:
		_bad_reply(obs)
		return
	if rewards.size() != num_envs or terminateds.size() != num_envs or truncateds.size() != num_envs or infos.size() != num_envs:
		_bad_reply("step_batch: rewards, terminateds, truncateds and infos need %d entries each" % num_envs)
		return
	_reply(Rlay.STEP_RESULT, {"obs": obs, "reward": Rlay.tensor("float64", [num_envs], rewards),
		"terminated": Rlay.tensor("bool", [num_envs], terminateds),
		"truncated": Rlay.tensor("bool", [num_envs], truncateds), "info": Spaces.stack_infos(infos)})


func _stack_obs(obs_list: Array):
	if obs_list.size() != num_envs:
		return "expected %d observations (one per sub-env), got %d" % [num_envs, obs_list.size()]
	var wire := []
	for i in range(num_envs):
		var o := Spaces.to_wire(observation_space, obs_list[i], "obs[%d]" % i)
		if not o[0]:
			return o[1]
		wire.append(o[1])
	return Spaces.stack(observation_space, wire)


func reply_render(frame) -> void:
	_reply(Rlay.RENDER_RESULT, {"frame": frame})


func reply_call(value) -> void:
	_reply(Rlay.CALL_RESULT, {"value": value})


# Answer the outstanding command with an error (ENV_EXCEPTION by default; non-fatal).
func reply_error(code: int, message: String, remote_type = null, fatal: bool = false) -> void:
	if command == null:
		push_error("rlay: reply_error without an outstanding command")
		return
	_answer_error(code, message, fatal, remote_type)


func _bad_reply(why: String) -> void:
	push_error("rlay: " + why)
	_answer_error(Rlay.ENV_EXCEPTION, why, false, "ValueError")


func _reply(kind: int, body: Dictionary) -> void:
	if command == null:
		push_error("rlay: a reply without an outstanding command")
		return
	var why: String = conn.send(kind, body)
	if why != "":
		push_error("rlay: cannot send the reply: " + why)
		_answer_error(Rlay.ENV_EXCEPTION, "the reply could not be encoded: " + why, false, "ValueError")
		return
	command = null
	command_action = null
	_flush()


func _end(ok: bool, why: String) -> void:
	if _ended:
		return
	_ended = true
	_flush()
	if _peer != null:
		_peer.disconnect_from_host()
	if _server != null:
		_server.stop()
	if not ok:
		printerr("rlay: " + why)
	emit_signal("session_ended", ok, why)
	if quit_when_done and is_inside_tree():
		get_tree().quit(0 if ok else 1)
