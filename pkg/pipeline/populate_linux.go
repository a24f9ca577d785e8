package pipeline

import "syscall"

const populate = syscall.MAP_POPULATE
