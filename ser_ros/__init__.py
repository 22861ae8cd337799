"""ROS 2 side of ser_ros: thin nodes over the ROS-free ser_models core."""
