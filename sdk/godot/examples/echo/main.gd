# `godot3-server --no-window -s res://examples/echo/main.gd -- --listen ADDR [--num-envs N]`
extends SceneTree

const Echo = preload("res://examples/echo/echo_env.gd")


func _initialize() -> void:
	root.add_child(Echo.new())
