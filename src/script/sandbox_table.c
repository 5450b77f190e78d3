/* The sandbox's table library: insert, remove, move, concat and sort loop
 * in C over a length the script controls (__len, __index), so these check
 * the CPU budget on every element or comparison. */
#include "internal.h"

#include <limits.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#define NEED_READ 1
#define NEED_WRITE 2
#define NEED_LEN 4

static int has_field(lua_State *L, const char *name)
{
    int present;

    lua_pushstring(L, name);
    present = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 1);
    return present;
}

/* Accepts a table, or a value whose metatable has what the call needs. */
static void check_table(lua_State *L, int arg, int need)
{
    int ok;

    if (lua_type(L, arg) == LUA_TTABLE) {
        return;
    }
    if (!lua_getmetatable(L, arg)) {
        luaL_checktype(L, arg, LUA_TTABLE);
    }
    ok = (!(need & NEED_READ) || has_field(L, "__index")) &&
         (!(need & NEED_WRITE) || has_field(L, "__newindex")) &&
         (!(need & NEED_LEN) || has_field(L, "__len"));
    lua_pop(L, 1);
    if (!ok) {
        luaL_checktype(L, arg, LUA_TTABLE);
    }
}

static int safe_insert(lua_State *L)
{
    struct rf_sandbox *sb = rf__sandbox_of(L);
    lua_Integer e, pos;

    check_table(L, 1, NEED_READ | NEED_WRITE | NEED_LEN);
    e = (lua_Integer)((lua_Unsigned)luaL_len(L, 1) + 1u); /* first empty */
    switch (lua_gettop(L)) {
    case 2:
        pos = e;
        break;
    case 3:
        pos = luaL_checkinteger(L, 2);
        luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)e, 2,
                      "position out of bounds");
        for (lua_Integer i = e; i > pos; i--) { /* shift up */
            rf__sandbox_check(L, sb);
            lua_geti(L, 1, i - 1);
            lua_seti(L, 1, i);
        }
        break;
    default:
        return luaL_error(L, "wrong number of arguments to 'insert'");
    }
    lua_seti(L, 1, pos);
    return 0;
}

static int safe_remove(lua_State *L)
{
    struct rf_sandbox *sb = rf__sandbox_of(L);
    lua_Integer size, pos;

    check_table(L, 1, NEED_READ | NEED_WRITE | NEED_LEN);
    size = luaL_len(L, 1);
    pos = luaL_optinteger(L, 2, size);
    if (pos != size) { /* removing past the end is allowed by one */
        luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 2,
                      "position out of bounds");
    }
    lua_geti(L, 1, pos);
    for (; pos < size; pos++) { /* shift down */
        rf__sandbox_check(L, sb);
        lua_geti(L, 1, pos + 1);
        lua_seti(L, 1, pos);
    }
    lua_pushnil(L);
    lua_seti(L, 1, pos);
    return 1;
}

/* table.move(a1, f, e, t [, a2]) */
static int safe_move(lua_State *L)
{
    struct rf_sandbox *sb = rf__sandbox_of(L);
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    lua_Integer t = luaL_checkinteger(L, 4);
    int dst = lua_isnoneornil(L, 5) ? 1 : 5;
    lua_Integer n;

    check_table(L, 1, NEED_READ);
    check_table(L, dst, NEED_WRITE);
    if (e >= f) {
        luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3,
                      "too many elements to move");
        n = e - f + 1;
        luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4,
                      "destination wrap around");
        if (t > e || t <= f ||
            (dst != 1 && !lua_compare(L, 1, dst, LUA_OPEQ))) {
            for (lua_Integer i = 0; i < n; i++) {
                rf__sandbox_check(L, sb);
                lua_geti(L, 1, f + i);
                lua_seti(L, dst, t + i);
            }
        } else { /* overlapping, destination above: copy backwards */
            for (lua_Integer i = n - 1; i >= 0; i--) {
                rf__sandbox_check(L, sb);
                lua_geti(L, 1, f + i);
                lua_seti(L, dst, t + i);
            }
        }
    }
    lua_pushvalue(L, dst);
    return 1;
}

static void add_field(lua_State *L, luaL_Buffer *b, lua_Integer i)
{
    lua_geti(L, 1, i);
    if (!lua_isstring(L, -1)) {
        luaL_error(L,
                   "table.concat: value at index %I is a %s, not a "
                   "string or number",
                   (LUAI_UACINT)i, luaL_typename(L, -1));
    }
    luaL_addvalue(b);
}

/* table.concat(list [, sep [, i [, j]]]) */
static int safe_concat(lua_State *L)
{
    struct rf_sandbox *sb = rf__sandbox_of(L);
    size_t lsep;
    const char *sep;
    lua_Integer i, last;
    luaL_Buffer b;

    check_table(L, 1, NEED_READ | NEED_LEN);
    sep = luaL_optlstring(L, 2, "", &lsep);
    i = luaL_optinteger(L, 3, 1);
    last = luaL_opt(L, luaL_checkinteger, 4, luaL_len(L, 1));
    luaL_buffinit(L, &b);
    for (; i < last; i++) {
        rf__sandbox_check(L, sb);
        add_field(L, &b, i);
        luaL_addlstring(&b, sep, lsep);
    }
    if (i == last) {
        add_field(L, &b, i);
    }
    luaL_pushresult(&b);
    return 1;
}

/* Sorting state: the list is argument 1, the comparator (or nil for "<")
 * argument 2. */
struct sorter {
    lua_State *L;
    struct rf_sandbox *sb;
    int has_cmp;
};

/* Is the value at stack index a less than the one at b? */
static int less(struct sorter *s, int a, int b)
{
    lua_State *L = s->L;
    int r;

    rf__sandbox_check(L, s->sb);
    if (!s->has_cmp) {
        return lua_compare(L, a, b, LUA_OPLT);
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, a);
    lua_pushvalue(L, b);
    lua_call(L, 2, 1);
    r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

static int less_at(struct sorter *s, lua_Integer i, lua_Integer j)
{
    int top, r;

    lua_geti(s->L, 1, i);
    lua_geti(s->L, 1, j);
    top = lua_gettop(s->L);
    r = less(s, top - 1, top);
    lua_pop(s->L, 2);
    return r;
}

static void swap(struct sorter *s, lua_Integer i, lua_Integer j)
{
    lua_geti(s->L, 1, i);
    lua_geti(s->L, 1, j);
    lua_seti(s->L, 1, i);
    lua_seti(s->L, 1, j);
}

static void insertion_sort(struct sorter *s, lua_Integer lo, lua_Integer up)
{
    lua_State *L = s->L;

    for (lua_Integer i = lo + 1; i <= up; i++) {
        lua_Integer j = i - 1;
        int v;

        lua_geti(L, 1, i);
        v = lua_gettop(L);
        for (; j >= lo; j--) {
            lua_geti(L, 1, j);
            if (!less(s, v, v + 1)) {
                lua_pop(L, 1);
                break;
            }
            lua_seti(L, 1, j + 1);
        }
        lua_seti(L, 1, j + 1);
    }
}

static noreturn void bad_order(lua_State *L)
{
    luaL_error(L, "invalid order function for sorting");
    abort(); /* luaL_error does not return */
}

/* Orders a[lo], a[mid], a[up] among themselves. */
static void order_three(struct sorter *s, lua_Integer lo, lua_Integer mid,
                        lua_Integer up)
{
    if (less_at(s, mid, lo)) {
        swap(s, mid, lo);
    }
    if (less_at(s, up, mid)) {
        swap(s, up, mid);
        if (less_at(s, mid, lo)) {
            swap(s, mid, lo);
        }
    }
}

/* Moves i up past elements less than the pivot (at stack index p) and
 * returns where it stops; `stop` is where a sane order must stop it. */
static lua_Integer scan_up(struct sorter *s, int p, lua_Integer i,
                           lua_Integer stop)
{
    while (lua_geti(s->L, 1, ++i), less(s, p + 1, p)) {
        lua_pop(s->L, 1);
        if (i >= stop) {
            bad_order(s->L);
        }
    }
    lua_pop(s->L, 1);
    return i;
}

/* Moves j down past elements greater than the pivot. */
static lua_Integer scan_down(struct sorter *s, int p, lua_Integer j,
                             lua_Integer stop)
{
    while (lua_geti(s->L, 1, --j), less(s, p, p + 1)) {
        lua_pop(s->L, 1);
        if (j <= stop) {
            bad_order(s->L);
        }
    }
    lua_pop(s->L, 1);
    return j;
}

/* Splits lo..up (at least 3 elements) around the median of its first,
 * middle and last elements; returns the pivot's final place. */
static lua_Integer partition(struct sorter *s, lua_Integer lo, lua_Integer up)
{
    lua_Integer mid = lo + (up - lo) / 2, i = lo, j = up - 1;
    int p;

    order_three(s, lo, mid, up);
    swap(s, mid, up - 1); /* a[lo] <= pivot <= a[up] bound the scans */
    lua_geti(s->L, 1, up - 1);
    p = lua_gettop(s->L);
    for (;;) {
        i = scan_up(s, p, i, up - 1);
        j = scan_down(s, p, j, lo);
        if (j < i) {
            break;
        }
        swap(s, i, j);
    }
    lua_pop(s->L, 1);
    swap(s, up - 1, i);
    return i;
}

/* Quicksort; recursion only into the smaller half, so depth stays below
 * log2(n). */
static void sort_range(struct sorter *s, lua_Integer lo, lua_Integer up)
{
    while (up - lo >= 8) {
        lua_Integer p = partition(s, lo, up);

        if (p - lo < up - p) {
            sort_range(s, lo, p - 1);
            lo = p + 1;
        } else {
            sort_range(s, p + 1, up);
            up = p - 1;
        }
    }
    insertion_sort(s, lo, up);
}

/* table.sort(list [, comp]). The stock sort compares in C with no hook;
 * this one checks the budget on every comparison. */
static int safe_sort(lua_State *L)
{
    struct sorter s = {L, rf__sandbox_of(L), 0};
    lua_Integer n;

    check_table(L, 1, NEED_READ | NEED_WRITE | NEED_LEN);
    n = luaL_len(L, 1);
    if (n > 1) {
        luaL_argcheck(L, n < INT_MAX, 1, "array too big");
        if (!lua_isnoneornil(L, 2)) {
            luaL_checktype(L, 2, LUA_TFUNCTION);
        }
        lua_settop(L, 2);
        s.has_cmp = !lua_isnil(L, 2);
        sort_range(&s, 1, n);
    }
    return 0;
}

static void set_fn(lua_State *L, const char *name, lua_CFunction fn)
{
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, name);
}

void rf__sandbox_open_table(lua_State *L)
{
    lua_pushcfunction(L, luaopen_table);
    lua_call(L, 0, 1);
    set_fn(L, "insert", safe_insert);
    set_fn(L, "remove", safe_remove);
    set_fn(L, "move", safe_move);
    set_fn(L, "concat", safe_concat);
    set_fn(L, "sort", safe_sort);
}
