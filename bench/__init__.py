"""The benchmark suite (`make bench`): each module measures variants side by side in one run and
prints them; nothing is asserted. `python -m bench` runs every module's `main()`;
`python -m bench reload` runs one."""
