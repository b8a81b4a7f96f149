/* bxt-cmod: a C module compiled when the rock is installed. */
#include "lua.h"
#include "lauxlib.h"

static int add(lua_State *L) {
    lua_Number a = luaL_checknumber(L, 1);
    lua_Number b = luaL_checknumber(L, 2);
    lua_pushnumber(L, a + b);
    return 1;
}

int luaopen_bxt_cmod(lua_State *L) {
    lua_newtable(L);
    lua_pushcfunction(L, add);
    lua_setfield(L, -2, "add");
    lua_pushstring(L, "compiled");
    lua_setfield(L, -2, "kind");
    return 1;
}
