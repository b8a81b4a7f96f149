/*
** collectgarbage for the default sandbox: only the options that cannot change how the
** collector behaves ("collect", "count", "step", "isrunning"; others are refused), and
** "collect" and "step" done as a sequence of bounded incremental steps with the VM's
** stop flag read between them (stop.h). A full collection is one C call whose time grows
** with the heap; as steps, a timeout or an interrupt stops it. The collector stays in
** incremental mode in the default sandbox (switching modes is refused), which is what
** makes a basic step bounded.
**
** Results are Lua 5.4.9's: "collect" returns 0, "step" true when it finished a cycle.
*/

#define LUA_LIB

#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "stop.h"


/* Kilobytes of collector debt paid per piece of a "step" with a size. */
#define BXVM_GC_PIECE_KB 256


/*
** A full collection: steps until two cycles end. The first end finishes the cycle under
** way (whose marks predate this call); the second is a whole cycle, which frees all that
** was unreachable when the call began (as luaC_fullgc does).
*/
static int fullcollect (lua_State *L) {
  int ends = 0;
  while (ends < 2) {
    if (lua_gc(L, LUA_GCSTEP, 0))
      ends++;
    bxvm_check_stop(L);
  }
  lua_pushinteger(L, 0);
  return 1;
}


static int step (lua_State *L) {
  lua_Integer kb = luaL_optinteger(L, 2, 0);
  int res = 0;
  if (kb <= 0)  /* a basic step (Lua's behaviour for 0; a negative size adds no debt) */
    res = lua_gc(L, LUA_GCSTEP, (int)(kb < -1024 ? -1024 : kb));
  else {
    if (kb > 0x7fffffff) kb = 0x7fffffff;  /* Lua casts the size to int */
    while (kb > 0 && !res) {
      int piece = (kb < BXVM_GC_PIECE_KB) ? (int)kb : BXVM_GC_PIECE_KB;
      res = lua_gc(L, LUA_GCSTEP, piece);
      kb -= piece;
      bxvm_check_stop(L);
    }
  }
  lua_pushboolean(L, res);
  return 1;
}


int bxvm_collectgarbage (lua_State *L) {
  const char *opt = luaL_optstring(L, 1, "collect");
  if (strcmp(opt, "collect") == 0)
    return fullcollect(L);
  else if (strcmp(opt, "step") == 0)
    return step(L);
  else if (strcmp(opt, "count") == 0) {
    int k = lua_gc(L, LUA_GCCOUNT);
    int b = lua_gc(L, LUA_GCCOUNTB);
    lua_pushnumber(L, (lua_Number)k + ((lua_Number)b/1024));
    return 1;
  }
  else if (strcmp(opt, "isrunning") == 0) {
    lua_pushboolean(L, lua_gc(L, LUA_GCISRUNNING));
    return 1;
  }
  lua_pushfstring(L, "collectgarbage('%s') is not allowed in the sandbox", opt);
  return lua_error(L);
}
