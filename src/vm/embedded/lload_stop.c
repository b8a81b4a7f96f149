/*
** Loading chunks for bioxen_vm in slices. Lua's parser never runs hooks: a chunk of
** hundreds of megabytes (or one a few kilobytes long that makes the parser work hard,
** such as thousands of labels in one block) would be parsed in one C call that no
** timeout or interrupt could stop. Here the parser gets its text BXVM_LOAD_SLICE bytes
** at a time, and the reader looks at the VM's stop flag (stop.h) before each slice,
** raising the stop error when one is pending.
**
** bxvm_loadbufferx is luaL_loadbufferx with that reader (the host compiles every chunk
** through it, src/vm/embedded/call.rs); bxvm_load is Lua 5.4.9's 'load' (lbaselib.c)
** with it, a reader function's pieces sliced the same way, and, when upvalue 1 is true
** (the default sandbox), text chunks only: a binary string chunk, or any reader
** function, is loaded with mode "t" (refused as Lua refuses it).
**
** Lua is distributed under the following license:
** Copyright (C) 1994-2026 Lua.org, PUC-Rio.
** 
** Permission is hereby granted, free of charge, to any person obtaining
** a copy of this software and associated documentation files (the
** "Software"), to deal in the Software without restriction, including
** without limitation the rights to use, copy, modify, merge, publish,
** distribute, sublicense, and/or sell copies of the Software, and to
** permit persons to whom the Software is furnished to do so, subject to
** the following conditions:
** 
** The above copyright notice and this permission notice shall be
** included in all copies or substantial portions of the Software.
** 
** THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND,
** EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
** MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.
** IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY
** CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT,
** TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE
** SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
*/

#define LUA_LIB

#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "stop.h"


/* Bytes of source the parser gets per reader call. */
#define BXVM_LOAD_SLICE ((size_t)4096)


/* Text not yet handed to the parser. */
typedef struct Slices {
  const char *s;
  size_t left;
} Slices;


static const char *nextslice (lua_State *L, Slices *sl, size_t *size) {
  const char *p = sl->s;
  size_t n = (sl->left < BXVM_LOAD_SLICE) ? sl->left : BXVM_LOAD_SLICE;
  bxvm_check_stop(L);
  sl->s += n;
  sl->left -= n;
  *size = n;
  return p;
}


static const char *slicereader (lua_State *L, void *ud, size_t *size) {
  Slices *sl = (Slices *)ud;
  if (sl->left == 0) {
    *size = 0;
    return NULL;
  }
  return nextslice(L, sl, size);
}


int bxvm_loadbufferx (lua_State *L, const char *buff, size_t size,
                      const char *name, const char *mode) {
  Slices sl;
  sl.s = buff;
  sl.left = size;
  return lua_load(L, slicereader, &sl, name, mode);
}


/* Lua's 'load', from here to the end, with the marked changes. */

static int load_aux (lua_State *L, int status, int envidx) {
  if (l_likely(status == LUA_OK)) {
    if (envidx != 0) {  /* 'env' parameter? */
      lua_pushvalue(L, envidx);  /* environment for loaded function */
      if (!lua_setupvalue(L, -2, 1))  /* set it as 1st upvalue */
        lua_pop(L, 1);  /* remove 'env' if not used by previous call */
    }
    return 1;
  }
  else {  /* error (message is on top of the stack) */
    luaL_pushfail(L);
    lua_insert(L, -2);  /* put before error message */
    return 2;  /* return fail plus error message */
  }
}


/*
** reserved slot, above all arguments, to hold a copy of the returned
** string to avoid it being collected while parsed. 'load' has four
** optional arguments (chunk, source name, mode, and environment).
*/
#define RESERVEDSLOT	5


/*
** Reader for generic 'load' function: 'lua_load' uses the
** stack for internal stuff, so the reader cannot change the
** stack top. Instead, it keeps its resulting string in a
** reserved slot inside the stack.
** (bioxen_vm: a piece longer than a slice is handed out in slices.)
*/
static const char *generic_reader (lua_State *L, void *ud, size_t *size) {
  Slices *sl = (Slices *)ud;
  if (sl->left == 0) {  /* bioxen_vm: the last piece is used up */
    bxvm_check_stop(L);
    luaL_checkstack(L, 2, "too many nested functions");
    lua_pushvalue(L, 1);  /* get function */
    lua_call(L, 0, 1);  /* call it */
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);  /* pop result */
      *size = 0;
      return NULL;
    }
    else if (l_unlikely(!lua_isstring(L, -1)))
      luaL_error(L, "reader function must return a string");
    lua_replace(L, RESERVEDSLOT);  /* save string in reserved slot */
    sl->s = lua_tolstring(L, RESERVEDSLOT, &sl->left);
    if (sl->left == 0) {  /* an empty string ends the chunk */
      *size = 0;
      return sl->s;
    }
  }
  return nextslice(L, sl, size);
}


int bxvm_load (lua_State *L) {
  int status;
  size_t l;
  const char *s = lua_tolstring(L, 1, &l);
  const char *mode = luaL_optstring(L, 3, "bt");
  int env = (!lua_isnone(L, 4) ? 4 : 0);  /* 'env' index or 0 if no 'env' */
  int text_only = lua_toboolean(L, lua_upvalueindex(1));  /* bioxen_vm */
  if (s != NULL) {  /* loading a string? */
    const char *chunkname = luaL_optstring(L, 2, s);
    if (text_only && l > 0 && s[0] == LUA_SIGNATURE[0])  /* bioxen_vm */
      mode = "t";
    status = bxvm_loadbufferx(L, s, l, chunkname, mode);
  }
  else {  /* loading from a reader function */
    const char *chunkname = luaL_optstring(L, 2, "=(load)");
    Slices sl;
    sl.s = NULL;
    sl.left = 0;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (text_only)  /* bioxen_vm */
      mode = "t";
    lua_settop(L, RESERVEDSLOT);  /* create reserved slot */
    status = lua_load(L, generic_reader, &sl, chunkname, mode);
  }
  return load_aux(L, status, env);
}
