/* Lua pattern matching (find, match, gmatch, gsub) with the stock results,
 * checking the CPU budget on every step: a backtracking match on a long
 * subject can run for hours inside C, where no hook reaches. */
#include "internal.h"

#include <ctype.h>
#include <string.h>

#include <lauxlib.h>

#define CAP_OPEN (-1)     /* capture started, not closed yet */
#define CAP_POSITION (-2) /* a () capture */
#define MAX_DEPTH 200     /* recursion of the matcher */
#define SPECIALS "^$*+?.([%-"
#define MAX_CAPTURES 32 /* as in the stock library */

struct matcher {
    lua_State *L;
    struct rf_sandbox *sb;
    const char *s0; /* subject */
    const char *s_end;
    const char *p_end; /* pattern end */
    int depth;         /* recursion left */
    int ncap;
    struct {
        const char *at;
        ptrdiff_t len;
    } cap[MAX_CAPTURES];
};

static const char *do_match(struct matcher *m, const char *s, const char *p);

static int uc(char c)
{
    return (unsigned char)c;
}

static void tick(struct matcher *m)
{
    rf__sandbox_check(m->L, m->sb);
}

static void matcher_init(struct matcher *m, lua_State *L, const char *s,
                         size_t ls, const char *p, size_t lp)
{
    m->L = L;
    m->sb = rf__sandbox_of(L);
    m->s0 = s;
    m->s_end = s + ls;
    m->p_end = p + lp;
    m->depth = MAX_DEPTH;
    m->ncap = 0;
}

static void matcher_reset(struct matcher *m)
{
    m->depth = MAX_DEPTH;
    m->ncap = 0;
}

/* Tests c against the class named by lower-case letter `lower` (%a, %d,
 * ...); -1 when the letter names no class. */
static int class_test(int c, int lower)
{
    switch (lower) {
    case 'a':
        return isalpha(c) != 0;
    case 'c':
        return iscntrl(c) != 0;
    case 'd':
        return isdigit(c) != 0;
    case 'g':
        return isgraph(c) != 0;
    case 'l':
        return islower(c) != 0;
    case 'p':
        return ispunct(c) != 0;
    case 's':
        return isspace(c) != 0;
    case 'u':
        return isupper(c) != 0;
    case 'w':
        return isalnum(c) != 0;
    case 'x':
        return isxdigit(c) != 0;
    case 'z': /* deprecated, still accepted by Lua 5.4 */
        return c == 0;
    default:
        return -1;
    }
}

/* Does character c match %cl? An upper-case class letter is the
 * complement; any other character stands for itself. */
static int in_class(int c, int cl)
{
    int r = class_test(c, tolower(cl));

    if (r < 0) {
        return cl == c;
    }
    return isupper(cl) ? !r : r;
}

/* Does c belong to the set [...] from p (at '[') to last (at ']')? */
static int in_set(int c, const char *p, const char *last)
{
    int yes = 1;

    p++;
    if (*p == '^') {
        yes = 0;
        p++;
    }
    while (p < last) {
        if (*p == '%' && p + 1 < last) {
            if (in_class(c, uc(p[1]))) {
                return yes;
            }
            p += 2;
        } else if (p + 2 < last && p[1] == '-') {
            if (uc(p[0]) <= c && c <= uc(p[2])) {
                return yes;
            }
            p += 3;
        } else {
            if (uc(*p) == c) {
                return yes;
            }
            p++;
        }
    }
    return !yes;
}

/* The end of the single-character item at p. */
static const char *item_end(struct matcher *m, const char *p)
{
    const char *q = p + 1;

    if (*p == '%') {
        if (q >= m->p_end) {
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        }
        return q + 1;
    }
    if (*p != '[') {
        return q;
    }
    if (q < m->p_end && *q == '^') {
        q++;
    }
    do { /* the set's first character may be ']' itself */
        if (q >= m->p_end) {
            luaL_error(m->L, "malformed pattern (missing ']')");
        }
        if (*q == '%') {
            q++;
        }
        q++;
    } while (q >= m->p_end || *q != ']');
    return q + 1;
}

/* Does the item p..ep match the character at s? */
static int item_matches(struct matcher *m, const char *s, const char *p,
                        const char *ep)
{
    int c;

    if (s >= m->s_end) {
        return 0;
    }
    c = uc(*s);
    switch (*p) {
    case '.':
        return 1;
    case '%':
        return in_class(c, uc(p[1]));
    case '[':
        return in_set(c, p, ep - 1);
    default:
        return uc(*p) == c;
    }
}

/* Greedy repetition: the longest run first, then shorter ones. */
static const char *expand_max(struct matcher *m, const char *s, const char *p,
                              const char *ep)
{
    ptrdiff_t n = 0;

    while (item_matches(m, s + n, p, ep)) {
        n++;
        tick(m);
    }
    for (; n >= 0; n--) {
        const char *r = do_match(m, s + n, ep + 1);

        if (r != NULL) {
            return r;
        }
        tick(m);
    }
    return NULL;
}

/* Lazy repetition: the shortest run first. */
static const char *expand_min(struct matcher *m, const char *s, const char *p,
                              const char *ep)
{
    for (;;) {
        const char *r = do_match(m, s, ep + 1);

        if (r != NULL) {
            return r;
        }
        if (!item_matches(m, s, p, ep)) {
            return NULL;
        }
        s++;
        tick(m);
    }
}

static const char *open_capture(struct matcher *m, const char *s, const char *p,
                                ptrdiff_t what)
{
    const char *r;

    if (m->ncap >= MAX_CAPTURES) {
        luaL_error(m->L, "too many captures");
    }
    m->cap[m->ncap].at = s;
    m->cap[m->ncap].len = what;
    m->ncap++;
    r = do_match(m, s, p);
    if (r == NULL) {
        m->ncap--;
    }
    return r;
}

static const char *close_capture(struct matcher *m, const char *s,
                                 const char *p)
{
    int i = m->ncap - 1;
    const char *r;

    while (i >= 0 && m->cap[i].len != CAP_OPEN) {
        i--;
    }
    if (i < 0) {
        luaL_error(m->L, "invalid pattern capture");
    }
    m->cap[i].len = s - m->cap[i].at;
    r = do_match(m, s, p);
    if (r == NULL) {
        m->cap[i].len = CAP_OPEN;
    }
    return r;
}

/* %bxy: a balanced run from x to the matching y. */
static const char *match_balance(struct matcher *m, const char *s,
                                 const char *p)
{
    int open, close, level = 1;

    if (p + 1 >= m->p_end) {
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    }
    if (s >= m->s_end || *s != *p) {
        return NULL;
    }
    open = uc(p[0]);
    close = uc(p[1]);
    while (++s < m->s_end) {
        tick(m);
        if (uc(*s) == close) {
            if (--level == 0) {
                return s + 1;
            }
        } else if (uc(*s) == open) {
            level++;
        }
    }
    return NULL;
}

/* %1-%9 inside a pattern: the text of an earlier, closed capture. */
static const char *match_backref(struct matcher *m, const char *s, int digit)
{
    int i = digit - '1';
    size_t len;

    if (i < 0 || i >= m->ncap || m->cap[i].len == CAP_OPEN) {
        luaL_error(m->L, "invalid capture index %%%d", i + 1);
    }
    if (m->cap[i].len < 0) {
        return NULL; /* a position capture matches no text */
    }
    len = (size_t)m->cap[i].len;
    if ((size_t)(m->s_end - s) >= len && memcmp(m->cap[i].at, s, len) == 0) {
        return s + len;
    }
    return NULL;
}

/* %f[set]: matches nowhere but at a border from outside to inside set. */
static const char *match_frontier(struct matcher *m, const char *s,
                                  const char *p, const char **next)
{
    const char *ep;
    int prev, cur;

    if (p >= m->p_end || *p != '[') {
        luaL_error(m->L, "missing '[' after '%%f' in pattern");
    }
    ep = item_end(m, p);
    prev = s == m->s0 ? 0 : uc(s[-1]);
    cur = s < m->s_end ? uc(*s) : 0;
    *next = ep;
    if (!in_set(prev, p, ep - 1) && in_set(cur, p, ep - 1)) {
        return s;
    }
    return NULL;
}

/* One item with its optional quantifier; returns the match end or NULL.
 * Sets *p_next when matching goes on with the rest of the pattern. */
static const char *match_item(struct matcher *m, const char *s, const char *p,
                              const char **p_next)
{
    const char *ep = item_end(m, p);
    int q = ep < m->p_end ? *ep : '\0';

    *p_next = NULL;
    if (!item_matches(m, s, p, ep)) {
        if (q == '*' || q == '?' || q == '-') { /* zero times is fine */
            *p_next = ep + 1;
            return s;
        }
        return NULL;
    }
    switch (q) {
    case '?': {
        const char *r = do_match(m, s + 1, ep + 1);

        if (r != NULL) {
            return r;
        }
        *p_next = ep + 1;
        return s;
    }
    case '+':
        return expand_max(m, s + 1, p, ep);
    case '*':
        return expand_max(m, s, p, ep);
    case '-':
        return expand_min(m, s, p, ep);
    default:
        *p_next = ep;
        return s + 1;
    }
}

/* Matches pattern p against the subject from s. Iterates over plain items
 * and recurses only where it must backtrack. */
static const char *match_here(struct matcher *m, const char *s, const char *p)
{
    const char *next;

    while (s != NULL && p < m->p_end) {
        int nx = p + 1 < m->p_end ? uc(p[1]) : -1;

        tick(m);
        if (*p == '(') {
            return nx == ')' ? open_capture(m, s, p + 2, CAP_POSITION)
                             : open_capture(m, s, p + 1, CAP_OPEN);
        }
        if (*p == ')') {
            return close_capture(m, s, p + 1);
        }
        if (*p == '$' && p + 1 == m->p_end) {
            return s == m->s_end ? s : NULL;
        }
        if (*p == '%' && nx == 'b') {
            s = match_balance(m, s, p + 2);
            p += 4;
        } else if (*p == '%' && nx == 'f') {
            s = match_frontier(m, s, p + 2, &next);
            p = next;
        } else if (*p == '%' && nx >= '0' && nx <= '9') {
            s = match_backref(m, s, nx);
            p += 2;
        } else {
            s = match_item(m, s, p, &next);
            if (next == NULL) {
                return s; /* the quantifier matched the rest already */
            }
            p = next;
        }
    }
    return s;
}

static const char *do_match(struct matcher *m, const char *s, const char *p)
{
    const char *r;

    if (m->depth-- == 0) {
        luaL_error(m->L, "pattern too complex");
    }
    r = match_here(m, s, p);
    m->depth++;
    return r;
}

/* Pushes capture i of the match s..e; capture 0 without captures is the
 * whole match. */
static void push_capture(struct matcher *m, int i, const char *s, const char *e)
{
    if (i >= m->ncap) {
        if (i != 0) {
            luaL_error(m->L, "invalid capture index %%%d", i + 1);
        }
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    if (m->cap[i].len == CAP_OPEN) {
        luaL_error(m->L, "unfinished capture");
    }
    if (m->cap[i].len == CAP_POSITION) {
        lua_pushinteger(m->L, m->cap[i].at - m->s0 + 1);
        return;
    }
    lua_pushlstring(m->L, m->cap[i].at, (size_t)m->cap[i].len);
}

/* Pushes all captures (or the whole match when s is not NULL and there are
 * none) and returns how many. */
static int push_captures(struct matcher *m, const char *s, const char *e)
{
    int n = m->ncap == 0 && s != NULL ? 1 : m->ncap;

    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++) {
        push_capture(m, i, s, e);
    }
    return n;
}

/* A relative string position turned into a 1-based one, at least 1. */
static size_t start_pos(lua_Integer pos, size_t len)
{
    if (pos > 0) {
        return (size_t)pos;
    }
    if (pos == 0 || pos < -(lua_Integer)len) {
        return 1;
    }
    return len + (size_t)pos + 1;
}

static int has_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++) {
        if (p[i] != '\0' && strchr(SPECIALS, p[i]) != NULL) {
            return 1;
        }
    }
    return 0;
}

/* Plain substring search with a budget check per candidate. */
static const char *find_plain(lua_State *L, const char *s, size_t ls,
                              const char *p, size_t lp)
{
    struct rf_sandbox *sb = rf__sandbox_of(L);
    const char *last, *q;

    if (lp == 0) {
        return s;
    }
    if (lp > ls) {
        return NULL;
    }
    last = s + (ls - lp); /* the last place a match can start */
    while (s <= last) {
        rf__sandbox_check(L, sb);
        q = memchr(s, *p, (size_t)(last - s) + 1);
        if (q == NULL) {
            return NULL;
        }
        if (memcmp(q + 1, p + 1, lp - 1) == 0) {
            return q;
        }
        s = q + 1;
    }
    return NULL;
}

/* string.find without specials, or with `plain`: pushes start and end. */
static int push_plain_find(lua_State *L, const char *s, size_t ls, size_t init,
                           const char *p, size_t lp)
{
    const char *at = find_plain(L, s + init, ls - init, p, lp);

    if (at == NULL) {
        luaL_pushfail(L);
        return 1;
    }
    lua_pushinteger(L, (at - s) + 1);
    lua_pushinteger(L, (lua_Integer)((at - s) + (ptrdiff_t)lp));
    return 2;
}

static int find_or_match(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
    int anchor = lp > 0 && *p == '^';
    struct matcher m;
    const char *s1 = s + init;

    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        return push_plain_find(L, s, ls, init, p, lp);
    }
    matcher_init(&m, L, s, ls, p + anchor, lp - (size_t)anchor);
    do {
        const char *e;

        matcher_reset(&m);
        e = do_match(&m, s1, p + anchor);
        if (e != NULL && !find) {
            return push_captures(&m, s1, e);
        }
        if (e != NULL) {
            lua_pushinteger(L, (s1 - s) + 1);
            lua_pushinteger(L, e - s);
            return push_captures(&m, NULL, NULL) + 2;
        }
    } while (s1++ < m.s_end && !anchor);
    luaL_pushfail(L);
    return 1;
}

int rf__sandbox_str_find(lua_State *L)
{
    return find_or_match(L, 1);
}

int rf__sandbox_str_match(lua_State *L)
{
    return find_or_match(L, 0);
}

/* The gmatch iterator. Upvalues: subject, pattern, next start offset, end
 * offset of the last match (-1 for none). */
static int gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    lua_Integer pos = lua_tointeger(L, lua_upvalueindex(3));
    lua_Integer last = lua_tointeger(L, lua_upvalueindex(4));
    struct matcher m;

    matcher_init(&m, L, s, ls, p, lp);
    for (const char *src = s + pos; src <= m.s_end; src++) {
        const char *e;

        matcher_reset(&m);
        e = do_match(&m, src, p);
        if (e != NULL && (last < 0 || e != s + last)) {
            lua_pushinteger(L, e - s);
            lua_copy(L, -1, lua_upvalueindex(4));
            lua_replace(L, lua_upvalueindex(3));
            return push_captures(&m, src, e);
        }
    }
    lua_pushinteger(L, (lua_Integer)ls + 1);
    lua_replace(L, lua_upvalueindex(3));
    return 0;
}

int rf__sandbox_str_gmatch(lua_State *L)
{
    size_t ls;
    size_t init;

    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) {
        init = ls + 1; /* past the end: no matches */
    }
    lua_settop(L, 2);
    lua_pushinteger(L, (lua_Integer)init);
    lua_pushinteger(L, -1);
    lua_pushcclosure(L, gmatch_next, 4);
    return 1;
}

/* Appends the replacement string (argument 3) for match s..e, with %0-%9
 * and %% expanded. */
static void add_template(struct matcher *m, luaL_Buffer *b, const char *s,
                         const char *e)
{
    size_t l;
    const char *r = lua_tolstring(m->L, 3, &l);

    for (size_t i = 0; i < l; i++) {
        rf__sandbox_check(m->L, m->sb);
        if (r[i] != '%') {
            luaL_addchar(b, r[i]);
            continue;
        }
        i++;
        if (i < l && r[i] == '%') {
            luaL_addchar(b, '%');
        } else if (i < l && r[i] == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (i < l && isdigit(uc(r[i]))) {
            push_capture(m, r[i] - '1', s, e);
            luaL_tolstring(m->L, -1, NULL);
            lua_remove(m->L, -2);
            luaL_addvalue(b);
        } else {
            luaL_error(m->L, "invalid use of '%%' in replacement string");
        }
    }
}

/* Appends the replacement for match s..e: a template, a table lookup or a
 * function call; false or nil keeps the original text. */
static void add_replacement(struct matcher *m, luaL_Buffer *b, const char *s,
                            const char *e, int kind)
{
    lua_State *L = m->L;

    if (kind == LUA_TFUNCTION) {
        int n;

        lua_pushvalue(L, 3);
        n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else if (kind == LUA_TTABLE) {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_template(m, b, s, e);
        return;
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    } else {
        luaL_addvalue(b);
    }
}

/* The gsub loop: replaces up to max_n matches of the prepared matcher,
 * whose pattern starts at p, into b; returns how many it replaced. */
static lua_Integer replace_all(struct matcher *m, luaL_Buffer *b, const char *p,
                               int anchor, lua_Integer max_n, int kind)
{
    const char *src = m->s0, *last = NULL;
    lua_Integer n = 0;

    while (n < max_n) {
        const char *e;

        matcher_reset(m);
        e = do_match(m, src, p);
        if (e != NULL && e != last) {
            n++;
            add_replacement(m, b, src, e, kind);
            src = last = e;
        } else if (src < m->s_end) {
            luaL_addchar(b, *src++);
        } else {
            break;
        }
        if (anchor) {
            break;
        }
    }
    luaL_addlstring(b, src, (size_t)(m->s_end - src));
    return n;
}

int rf__sandbox_str_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int kind = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    int anchor = lp > 0 && *p == '^';
    struct matcher m;
    luaL_Buffer b;
    lua_Integer n;

    luaL_argexpected(L,
                     kind == LUA_TNUMBER || kind == LUA_TSTRING ||
                         kind == LUA_TFUNCTION || kind == LUA_TTABLE,
                     3, "string/function/table");
    matcher_init(&m, L, src, ls, p + anchor, lp - (size_t)anchor);
    luaL_buffinit(L, &b);
    n = replace_all(&m, &b, p + anchor, anchor, max_n, kind);
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}
