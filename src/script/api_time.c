/* time.now, time.parse and time.format for scripts: ISO 8601 date-times
 * with offsets, as Zoho writes them (2026-03-04T10:21:09+05:30). */
#include "referee/script_api.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
    long long era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 ? 28 + leap : dm[m - 1];
}

/* Parses "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)". Returns 0 and
 * the UTC epoch seconds (with fraction), or -1. */
static int parse_iso(const char *s, double *out)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0, sign = 1;
    double frac = 0;
    size_t n = strlen(s);

    if (n < 10 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
        s[7] != '-' || digits(s + 8, 2, &d) || mo < 1 || mo > 12 || d < 1 ||
        d > days_in_month(y, mo)) {
        return -1;
    }
    s += 10;
    if (*s == 'T' || *s == ' ') {
        if (digits(s + 1, 2, &h) || s[3] != ':' || digits(s + 4, 2, &mi) ||
            s[6] != ':' || digits(s + 7, 2, &sec) || h > 23 || mi > 59 ||
            sec > 60) {
            return -1;
        }
        s += 9;
        if (*s == '.') {
            double scale = 0.1;

            for (s++; *s >= '0' && *s <= '9'; s++, scale /= 10) {
                frac += (*s - '0') * scale;
            }
        }
        if (*s == 'Z') {
            s++;
        } else if (*s == '+' || *s == '-') {
            sign = *s == '-' ? -1 : 1;
            if (digits(s + 1, 2, &oh) || s[3] != ':' ||
                digits(s + 4, 2, &om) || oh > 23 || om > 59) {
                return -1;
            }
            s += 6;
        } else {
            return -1; /* a date-time without a zone is ambiguous */
        }
    }
    if (*s != '\0') {
        return -1;
    }
    *out = (double)(days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 +
                    h * 3600 + mi * 60 + sec -
                    sign * (oh * 3600 + om * 60)) +
           frac;
    return 0;
}

static int l_now(lua_State *L)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec / 1e9);
    return 1;
}

static int l_parse(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    double t;

    if (parse_iso(s, &t) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "not an ISO 8601 date or date-time with a "
                           "zone: '%s'",
                        s);
        return 2;
    }
    if (t == (double)(lua_Integer)t) {
        lua_pushinteger(L, (lua_Integer)t);
    } else {
        lua_pushnumber(L, t);
    }
    return 1;
}

/* Reads an offset given as "+05:30", "Z" or minutes. */
static int offset_minutes(lua_State *L, int idx)
{
    const char *s;
    int h = 0, m = 0;

    if (lua_isnoneornil(L, idx)) {
        return 0;
    }
    if (lua_isinteger(L, idx)) {
        lua_Integer v = lua_tointeger(L, idx);

        luaL_argcheck(L, v > -24 * 60 && v < 24 * 60, idx, "offset too big");
        return (int)v;
    }
    s = luaL_checkstring(L, idx);
    if (strcmp(s, "Z") == 0) {
        return 0;
    }
    if (strlen(s) != 6 || (s[0] != '+' && s[0] != '-') ||
        digits(s + 1, 2, &h) || s[3] != ':' || digits(s + 4, 2, &m) ||
        h > 23 || m > 59) {
        return luaL_argerror(L, idx,
                             "offset like \"+05:30\", \"Z\" or minutes");
    }
    return (s[0] == '-' ? -1 : 1) * (h * 60 + m);
}

static int l_format(lua_State *L)
{
    lua_Number t = luaL_checknumber(L, 1);
    int off = offset_minutes(L, 2), a = off < 0 ? -off : off;
    int zulu = lua_type(L, 2) == LUA_TSTRING &&
               strcmp(lua_tostring(L, 2), "Z") == 0;
    time_t local = (time_t)t + off * 60;
    struct tm tm;
    char buf[64], zone[24];

    if (gmtime_r(&local, &tm) == NULL) {
        return luaL_argerror(L, 1, "time out of range");
    }
    /* Zoho accepts seconds precision with a numeric offset, never millis;
     * "Z" is written as asked, for other receivers. */
    if (zulu) {
        snprintf(zone, sizeof(zone), "Z");
    } else {
        snprintf(zone, sizeof(zone), "%c%02d:%02d", off < 0 ? '-' : '+',
                 a / 60, a % 60);
    }
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d%s",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, zone);
    lua_pushstring(L, buf);
    return 1;
}

int rf_api_open_time(lua_State *L)
{
    static const luaL_Reg fns[] = {{"now", l_now},
                                   {"parse", l_parse},
                                   {"format", l_format},
                                   {NULL, NULL}};

    luaL_newlib(L, fns);
    return 1;
}
