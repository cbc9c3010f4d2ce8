# The spec §12 conformance runner, in the engine: one line in (`roundtrip FRAME CANON` or
# `reject STREAM ERROR ROLE STATE [NUM_ENVS]`), one line out (`ok` or `fail <why>`), exit 0 at end of input.
# Run by bin/conformance. Answers are printed with the prefix "RLAY " (the engine prints its own
# banner on stdout too); bin/conformance keeps only those lines and strips the prefix.
extends SceneTree

const Rlay = preload("res://addons/rlay/rlay.gd")

var readline := ""


func _init():
	readline = OS.get_environment("RLAY_READLINE")
	while true:
		var out := []
		var code := OS.execute("/bin/sh", [readline], true, out)
		if code != 0:
			break
		var line: String = out[0] if out.size() > 0 else ""
		var answer = answer_line(line.strip_edges())
		if typeof(answer) != TYPE_STRING:
			answer = "fail the runner's own code failed on this line (a script error; see stderr)"
		print("RLAY " + answer)
	quit(0)


static func from_hex(s: String) -> PoolByteArray:
	var a := s.to_ascii()
	var n := a.size() / 2
	var out := PoolByteArray()
	out.resize(n)
	for i in range(n):
		var h: int = a[2 * i]
		var l: int = a[2 * i + 1]
		h = h - 48 if h <= 57 else h - 87
		l = l - 48 if l <= 57 else l - 87
		out[i] = (h << 4) | l
	return out


func answer_line(line: String):
	var parts := line.split(" ")
	if parts.size() == 3 and parts[0] == "roundtrip":
		return roundtrip(from_hex(parts[1]), from_hex(parts[2]))
	if (parts.size() == 5 or parts.size() == 6) and parts[0] == "reject":
		var n := int(parts[5]) if parts.size() == 6 else 1
		return reject(from_hex(parts[1]), parts[2], parts[3], parts[4], n)
	return "fail cannot parse the line: " + line.left(60)


func roundtrip(frame: PoolByteArray, canon: PoolByteArray) -> String:
	var reader = Rlay.FrameReader.new()
	reader.feed(frame)
	var f = reader.next_frame()
	if reader.err != 0:
		return "fail %s: %s" % [Rlay.ERROR_NAMES[reader.err], reader.err_msg]
	if f == null:
		return "fail no whole frame in the input"
	if reader.rx.size() != 0:
		return "fail %d bytes after the frame" % reader.rx.size()
	var m = Rlay.W.decode_message(f[0], f[1], f[2])
	if typeof(m) == TYPE_ARRAY:
		return "fail %s: %s" % [Rlay.ERROR_NAMES[m[0]], m[1]]
	var why := []
	var got: PoolByteArray = Rlay.W.message_frame(m, why)
	if why.size() > 0:
		return "fail re-encoding: " + why[0]
	var n: int = min(got.size(), canon.size())
	for i in range(n):
		if got[i] != canon[i]:
			return "fail re-encoded %d bytes differ from the canonical %d at byte %d" % [got.size(), canon.size(), i]
	if got.size() != canon.size():
		return "fail re-encoded %d bytes differ from the canonical %d at byte %d" % [got.size(), canon.size(), n]
	return "ok"


func reject(stream: PoolByteArray, want: String, role: String, state: String, num_envs: int) -> String:
	var code := 0
	var why := ""
	if state == "-":
		var reader = Rlay.FrameReader.new()
		reader.feed(stream)
		while code == 0:
			var f = reader.next_frame()
			if reader.err != 0:
				code = reader.err
				why = reader.err_msg
			elif f == null:
				reader.feed_eof()
				if reader.err != 0:
					code = reader.err
					why = reader.err_msg
				break
			else:
				var m = Rlay.W.decode_message(f[0], f[1], f[2])
				if typeof(m) == TYPE_ARRAY:
					code = m[0]
					why = m[1]
	else:
		var conn = Rlay.Connection.new(role)
		# Where a valid conversation leaves it (§12): its own HELLO sent; past `hello` the peer's
		# HELLO was its first frame (so the handshake limit is over); past `describe` the
		# ENV_INFO had Discrete(2) spaces and this num_envs.
		conn.state = state
		if state != "hello":
			conn.reader.max_first_frame_size = 0
		if not state in ["hello", "describe"]:
			conn.num_envs = num_envs
		conn.take_output()
		conn.receive_data(stream)
		conn.receive_eof()
		while conn.next_event() != null:
			pass
		code = conn.err
		why = conn.err_msg
	if code == 0:
		return "fail accepted; expected " + want
	var got: String = Rlay.ERROR_NAMES.get(code, str(code))
	if got != want:
		return "fail got %s (%s); expected %s" % [got, why, want]
	return "ok"
