/*
** The stop check shared by bioxen_vm's stoppable copies of Lua library functions (and
** one helper of Lua's string library that two of them use).
**
** A library function is one C call that no Lua hook can reach while it loops. The copies
** look at the VM's stop flag as they work and raise an error as soon as a timeout or an
** interrupt is pending; the host then reports TIMEOUT or INTERRUPTED (the flag, not the
** error, decides the status), and the hook that the stop armed keeps raising until the
** host call returns, so a pcall cannot swallow it.
**
** The stop flag: the first byte of the object whose address the library stores in the
** state's extra space (src/vm/embedded/stop.rs, LuaStopper, #[repr(C)] with `reason`
** first); 0 means "go on", 1 a timeout, 2 an interrupt. Every thread of a state has the
** same extra-space contents (Lua copies them from the main thread).
*/

#ifndef BXVM_STOP_H
#define BXVM_STOP_H

#include <stddef.h>

#include "lua.h"
#include "lauxlib.h"

/*
** Units of work between two looks at the stop flag. A unit is about a nanosecond of
** work (a byte scanned, a table slot moved is a few units), so a pending stop is seen
** within some microseconds.
*/
#define BXVM_STOP_BUDGET 8192

/* Bytes handled in one piece by the functions that work on long strings in chunks. */
#define BXVM_CHUNK ((size_t)1 << 16)

static inline unsigned char bxvm_stop_reason (lua_State *L) {
  const unsigned char *flag = *(const unsigned char *const *)lua_getextraspace(L);
  return flag == NULL ? 0 : __atomic_load_n(flag, __ATOMIC_SEQ_CST);
}

static inline int bxvm_stop_pending (lua_State *L) {
  return bxvm_stop_reason(L) != 0;
}

/* Raises the stop error when a stop is pending. */
static inline void bxvm_check_stop (lua_State *L) {
  unsigned char reason = bxvm_stop_reason(L);
  if (__builtin_expect(reason != 0, 0)) {
    lua_pushstring(L, reason == 1 ? "bioxen_vm: execution timed out"
                                  : "bioxen_vm: execution interrupted");
    lua_error(L);
  }
}

/*
** Counts `units` of work against `*budget` and looks at the stop flag each time the
** budget is spent.
*/
static inline void bxvm_work (lua_State *L, long *budget, long units) {
  *budget -= units;
  if (__builtin_expect(*budget < 0, 0)) {
    *budget = BXVM_STOP_BUDGET;
    bxvm_check_stop(L);
  }
}

/*
** Lua's own helper (lstrlib.c), shared by the string copies:
** translate a relative initial string position
** (negative means back from end): clip result to [1, inf).
** The length of any string in Lua must fit in a lua_Integer,
** so there are no overflows in the casts.
** The inverted comparison avoids a possible overflow
** computing '-pos'.
*/
static inline size_t posrelatI (lua_Integer pos, size_t len) {
  if (pos > 0)
    return (size_t)pos;
  else if (pos == 0)
    return 1;
  else if (pos < -(lua_Integer)len)  /* inverted comparison */
    return 1;  /* clip to 1 */
  else return len + (size_t)pos + 1;
}

#endif
