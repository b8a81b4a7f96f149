/*
** The message handler of the host's protected calls (src/vm/embedded/call.rs), as the
** standalone lua's: a string message, or the '__tostring' of an error object, gets a
** traceback; any other object is described by its type. The traceback is Lua 5.4.9's
** own (luaL_traceback and its helpers, lauxlib.c) with two changes, marked "bioxen_vm:":
** - the text is cut at 'max' bytes of the handler's bxvm_ErrorInfo (upvalue 1); the
**   length the whole text would have had is written to its 'full_len', so the host can
**   count what was cut without ever building it;
** - the search for a global name of each function (all loaded modules, two levels
**   deep) counts its work and reads the stop flag (stop.h); with a stop pending the
**   handler does nothing (its result is thrown away).
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


/* Shared with src/vm/embedded/call.rs (ErrorInfo, #[repr(C)]). */
typedef struct bxvm_ErrorInfo {
  size_t max;  /* most bytes of text the handler returns */
  size_t full_len;  /* set by the handler: length of the whole text */
} bxvm_ErrorInfo;


/* The text being built: pieces on the stack, at most 'max' bytes kept in all. */
typedef struct Text {
  size_t max;
  size_t kept;
  size_t full;
  int pieces;
  long budget;
} Text;


/* Keeps (a prefix of) the string on the top of the stack as the next piece. */
static void addpiece (lua_State *L, Text *t) {
  size_t l;
  const char *s = lua_tolstring(L, -1, &l);
  size_t room = t->max - t->kept;
  t->full += l;
  if (l <= room) {
    t->kept += l;
    t->pieces++;
  }
  else if (room > 0) {
    lua_pushlstring(L, s, room);
    lua_remove(L, -2);
    t->kept += room;
    t->pieces++;
  }
  else
    lua_pop(L, 1);
}


static void addliteral (lua_State *L, Text *t, const char *s) {
  lua_pushstring(L, s);
  addpiece(L, t);
}


/* Message text: up to its first zero, as luaL_traceback takes it; never copied whole. */
static void addmessage (lua_State *L, Text *t, const char *msg) {
  size_t l = strlen(msg);
  size_t room = t->max - t->kept;
  lua_pushlstring(L, msg, (l < room) ? l : room);
  t->kept += (l < room) ? l : room;
  t->full += l;
  t->pieces++;
}


#define LEVELS1	10	/* size of the first part of the stack */
#define LEVELS2	11	/* size of the second part of the stack */


/*
** Search for 'objidx' in table at index -1. ('objidx' must be an
** absolute index.) Return 1 + string at top if it found a good name.
*/
static int findfield (lua_State *L, int objidx, int level, Text *t) {
  if (level == 0 || !lua_istable(L, -1))
    return 0;  /* not found */
  lua_pushnil(L);  /* start 'next' loop */
  while (lua_next(L, -2)) {  /* for each pair in table */
    bxvm_work(L, &t->budget, 8);  /* bioxen_vm */
    if (lua_type(L, -2) == LUA_TSTRING) {  /* ignore non-string keys */
      if (lua_rawequal(L, objidx, -1)) {  /* found object? */
        lua_pop(L, 1);  /* remove value (but keep name) */
        return 1;
      }
      else if (findfield(L, objidx, level - 1, t)) {  /* try recursively */
        /* stack: lib_name, lib_table, field_name (top) */
        lua_pushliteral(L, ".");  /* place '.' between the two names */
        lua_replace(L, -3);  /* (in the slot occupied by table) */
        lua_concat(L, 3);  /* lib_name.field_name */
        return 1;
      }
    }
    lua_pop(L, 1);  /* remove value */
  }
  return 0;  /* not found */
}


/*
** Search for a name for a function in all loaded modules
*/
static int pushglobalfuncname (lua_State *L, lua_Debug *ar, Text *t) {
  int top = lua_gettop(L);
  lua_getinfo(L, "f", ar);  /* push function */
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  luaL_checkstack(L, 6, "not enough stack");  /* slots for 'findfield' */
  if (findfield(L, top + 1, 2, t)) {
    const char *name = lua_tostring(L, -1);
    if (strncmp(name, LUA_GNAME ".", 3) == 0) {  /* name start with '_G.'? */
      lua_pushstring(L, name + 3);  /* push name without prefix */
      lua_remove(L, -2);  /* remove original name */
    }
    lua_copy(L, -1, top + 1);  /* copy name to proper place */
    lua_settop(L, top + 1);  /* remove table "loaded" and name copy */
    return 1;
  }
  else {
    lua_settop(L, top);  /* remove function and global table */
    return 0;
  }
}


static void pushfuncname (lua_State *L, lua_Debug *ar, Text *t) {
  if (pushglobalfuncname(L, ar, t)) {  /* try first a global name */
    lua_pushfstring(L, "function '%s'", lua_tostring(L, -1));
    lua_remove(L, -2);  /* remove name */
  }
  else if (*ar->namewhat != '\0')  /* is there a name from code? */
    lua_pushfstring(L, "%s '%s'", ar->namewhat, ar->name);  /* use it */
  else if (*ar->what == 'm')  /* main? */
      lua_pushliteral(L, "main chunk");
  else if (*ar->what != 'C')  /* for Lua functions, use <file:line> */
    lua_pushfstring(L, "function <%s:%d>", ar->short_src, ar->linedefined);
  else  /* nothing left... */
    lua_pushliteral(L, "?");
}


static int lastlevel (lua_State *L) {
  lua_Debug ar;
  int li = 1, le = 1;
  /* find an upper bound */
  while (lua_getstack(L, le, &ar)) { li = le; le *= 2; }
  /* do a binary search */
  while (li < le) {
    int m = (li + le)/2;
    if (lua_getstack(L, m, &ar)) li = m + 1;
    else le = m;
  }
  return le - 1;
}


/* luaL_traceback(L, L, msg, level), cut at t->max bytes; pushes the text. */
static void traceback (lua_State *L, const char *msg, int level, Text *t) {
  lua_Debug ar;
  int last = lastlevel(L);
  int limit2show = (last - level > LEVELS1 + LEVELS2) ? LEVELS1 : -1;
  /* every piece stays on the stack until the end: at most 4 per level shown */
  luaL_checkstack(L, 4 * (LEVELS1 + LEVELS2) + 16, "not enough stack");
  if (msg) {
    addmessage(L, t, msg);
    addliteral(L, t, "\n");
  }
  addliteral(L, t, "stack traceback:");
  while (lua_getstack(L, level++, &ar)) {
    bxvm_work(L, &t->budget, 64);  /* bioxen_vm */
    if (limit2show-- == 0) {  /* too many levels? */
      int n = last - level - LEVELS2 + 1;  /* number of levels to skip */
      lua_pushfstring(L, "\n\t...\t(skipping %d levels)", n);
      addpiece(L, t);  /* add warning about skip */
      level += n;  /* and skip to last levels */
    }
    else {
      lua_getinfo(L, "Slnt", &ar);
      if (ar.currentline <= 0)
        lua_pushfstring(L, "\n\t%s: in ", ar.short_src);
      else
        lua_pushfstring(L, "\n\t%s:%d: in ", ar.short_src, ar.currentline);
      addpiece(L, t);
      pushfuncname(L, &ar, t);
      addpiece(L, t);
      if (ar.istailcall)
        addliteral(L, t, "\n\t(...tail calls...)");
    }
  }
  if (t->pieces == 0)
    lua_pushliteral(L, "");
  else
    lua_concat(L, t->pieces);
}


int bxvm_message_handler (lua_State *L) {
  bxvm_ErrorInfo *info = (bxvm_ErrorInfo *)lua_touserdata(L, lua_upvalueindex(1));
  Text t;
  size_t l;
  if (bxvm_stop_pending(L))  /* the outcome is the stop, whatever this returns */
    return 1;
  if (lua_type(L, 1) != LUA_TSTRING) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
      lua_tolstring(L, -1, &l);
      info->full_len = l;  /* the host takes at most 'max' bytes of it */
      return 1;
    }
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    lua_replace(L, 1);
  }
  t.max = info->max;
  t.kept = 0;
  t.full = 0;
  t.pieces = 0;
  t.budget = BXVM_STOP_BUDGET;
  traceback(L, lua_tostring(L, 1), 1, &t);
  info->full_len = t.full;
  return 1;
}
