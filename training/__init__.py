"""FlexRec training: item-level rewards, advantages, the uncertainty critic, and trainers
(TRL on one machine, verl to scale out)."""
