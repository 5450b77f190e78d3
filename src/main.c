/* referee command line: parses arguments and wires the modules. */
#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    puts("referee " REFEREE_VERSION);
    return 0;
}
