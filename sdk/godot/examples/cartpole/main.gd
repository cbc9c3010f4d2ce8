# Entry point of bin/cartpole: `godot3-server --no-window -s res://examples/cartpole/main.gd --
# --listen ADDR | --connect ADDR [--num-envs N]` (or the launcher's variables).
extends SceneTree

const CartPole = preload("res://examples/cartpole/cartpole.gd")


func _initialize() -> void:
	var node = CartPole.new()
	node.name = "CartPole"
	root.add_child(node)
