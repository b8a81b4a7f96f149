/* Does not compile: the build of this rock fails. */
#include "lua.h"
int luaopen_bxt_badc(lua_State *L) { this is not C; }
